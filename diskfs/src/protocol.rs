//! The control protocol: one text command per line, one reply line per
//! command.
//!
//! Commands (words separated by spaces):
//!
//! | command                 | effect                                                  |
//! |-------------------------|---------------------------------------------------------|
//! | `stall <ms>`            | hold every operation arriving in the next `ms` (0 ends) |
//! | `fsync-delay <ms>`      | every fsync/fsyncdir takes `ms` longer (0: off)         |
//! | `fail-writes on\|off`   | writes fail with EIO while on                           |
//! | `fail-fsync on\|off`    | fsyncs and fsyncdirs fail with EIO while on             |
//! | `drop-unsynced`         | discard every write not yet written back                |
//! | `heal`                  | end every fault (drops nothing)                         |
//! | `status`                | the faults in force and the dirty bytes                 |
//! | `sync`                  | write every dirty file back                             |
//!
//! Replies are `ok`, `ok <json>` or `err <reason>`, always on one line.
//! Milliseconds are bounded by [`FAULT_MS_MAX`].

use std::fmt;

use crate::error::CommandError;
use crate::faults::FAULT_MS_MAX;

/// Longest command or reply line accepted, in bytes.
pub const LINE_BYTES_MAX: usize = 4096;

/// A parsed, validated control command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Hold operations arriving in the next `ms` milliseconds.
    Stall {
        /// Duration; 0 ends a stall.
        ms: u64,
    },
    /// Make every fsync take `ms` milliseconds longer.
    FsyncDelay {
        /// Delay; 0 turns it off.
        ms: u64,
    },
    /// Fail writes with EIO (or stop).
    FailWrites(bool),
    /// Fail fsyncs with EIO (or stop).
    FailFsync(bool),
    /// Discard every unsynced write.
    DropUnsynced,
    /// End every fault.
    Heal,
    /// Report faults and dirty bytes.
    Status,
    /// Write every dirty file back.
    Sync,
}

impl Command {
    /// Parses one command line (surrounding whitespace ignored).
    pub fn parse(line: &str) -> Result<Command, CommandError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (&name, args) = words.split_first().ok_or(CommandError::Empty)?;
        let command = match name {
            "stall" => Command::Stall {
                ms: millis(name, args)?,
            },
            "fsync-delay" => Command::FsyncDelay {
                ms: millis(name, args)?,
            },
            "fail-writes" => Command::FailWrites(switch(name, args)?),
            "fail-fsync" => Command::FailFsync(switch(name, args)?),
            "drop-unsynced" => no_args(name, args, Command::DropUnsynced)?,
            "heal" => no_args(name, args, Command::Heal)?,
            "status" => no_args(name, args, Command::Status)?,
            "sync" => no_args(name, args, Command::Sync)?,
            other => return Err(CommandError::Unknown(other.to_string())),
        };
        Ok(command)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on_off = |on: bool| if on { "on" } else { "off" };
        match self {
            Command::Stall { ms } => write!(f, "stall {ms}"),
            Command::FsyncDelay { ms } => write!(f, "fsync-delay {ms}"),
            Command::FailWrites(on) => write!(f, "fail-writes {}", on_off(*on)),
            Command::FailFsync(on) => write!(f, "fail-fsync {}", on_off(*on)),
            Command::DropUnsynced => f.write_str("drop-unsynced"),
            Command::Heal => f.write_str("heal"),
            Command::Status => f.write_str("status"),
            Command::Sync => f.write_str("sync"),
        }
    }
}

fn single<'a>(name: &str, args: &[&'a str]) -> Result<&'a str, CommandError> {
    match args {
        [] => Err(CommandError::MissingArgument {
            command: name.to_string(),
        }),
        [one] => Ok(one),
        _ => Err(CommandError::TooManyArguments {
            command: name.to_string(),
        }),
    }
}

fn millis(name: &str, args: &[&str]) -> Result<u64, CommandError> {
    let value = single(name, args)?;
    let ms: u64 = value.parse().map_err(|_| CommandError::BadNumber {
        command: name.to_string(),
        value: value.to_string(),
    })?;
    if ms > FAULT_MS_MAX {
        return Err(CommandError::OutOfRange {
            command: name.to_string(),
            value: ms,
            max: FAULT_MS_MAX,
        });
    }
    Ok(ms)
}

fn switch(name: &str, args: &[&str]) -> Result<bool, CommandError> {
    match single(name, args)? {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(CommandError::BadSwitch {
            command: name.to_string(),
            value: other.to_string(),
        }),
    }
}

fn no_args(name: &str, args: &[&str], command: Command) -> Result<Command, CommandError> {
    if args.is_empty() {
        Ok(command)
    } else {
        Err(CommandError::TooManyArguments {
            command: name.to_string(),
        })
    }
}

/// A reply line.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `ok`
    Ok,
    /// `ok <json>`
    OkJson(serde_json::Value),
    /// `err <reason>`
    Err(String),
}

impl Reply {
    /// An `err` reply; the reason is flattened to one line.
    pub fn err(reason: impl fmt::Display) -> Reply {
        Reply::Err(reason.to_string().replace(['\n', '\r'], " "))
    }

    /// Whether the daemon accepted the command.
    pub fn is_ok(&self) -> bool {
        !matches!(self, Reply::Err(_))
    }

    /// Parses a reply line as [`Reply`]'s `Display` writes it.
    pub fn parse(line: &str) -> Result<Reply, String> {
        let line = line.trim_end_matches(['\n', '\r']);
        if line == "ok" {
            return Ok(Reply::Ok);
        }
        if let Some(json) = line.strip_prefix("ok ") {
            return serde_json::from_str(json)
                .map(Reply::OkJson)
                .map_err(|e| format!("bad json in reply: {e}"));
        }
        if let Some(reason) = line.strip_prefix("err") {
            return Ok(Reply::Err(reason.trim_start().to_string()));
        }
        Err(format!("unrecognised reply {line:?}"))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Ok => f.write_str("ok"),
            // serde_json's compact form never contains a newline.
            Reply::OkJson(v) => write!(f, "ok {v}"),
            Reply::Err(reason) => write!(f, "err {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_parses_and_prints_back() {
        for line in [
            "stall 250",
            "stall 0",
            "fsync-delay 600000",
            "fail-writes on",
            "fail-writes off",
            "fail-fsync on",
            "drop-unsynced",
            "heal",
            "status",
            "sync",
        ] {
            let cmd = Command::parse(line).unwrap();
            assert_eq!(cmd.to_string(), line);
        }
        assert_eq!(Command::parse("  stall   7 \r\n").unwrap(), Command::Stall { ms: 7 });
    }

    #[test]
    fn bad_commands_say_why() {
        let cases = [
            ("", "empty command"),
            ("bogus", "unknown command"),
            ("stall", "needs an argument"),
            ("stall x", "not a number"),
            ("stall -1", "not a number"),
            ("stall 600001", "at most 600000"),
            ("stall 1 2", "too many arguments"),
            ("fail-fsync maybe", "on or off"),
            ("heal now", "too many arguments"),
        ];
        for (line, want) in cases {
            let err = Command::parse(line).unwrap_err().to_string();
            assert!(err.contains(want), "{line:?}: {err:?} lacks {want:?}");
        }
    }

    #[test]
    fn replies_round_trip_on_one_line() {
        let replies = [
            Reply::Ok,
            Reply::OkJson(serde_json::json!({"dropped_bytes": 3, "files": 1})),
            Reply::err("a\nb"),
        ];
        for r in replies {
            let line = r.to_string();
            assert!(!line.contains('\n'));
            assert_eq!(Reply::parse(&line).unwrap(), r);
        }
        assert!(Reply::parse("maybe").is_err());
    }
}
