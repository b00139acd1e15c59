//! A campaign's own folder in the store, beside its tests' run folders:
//! `store/campaign-<file stem>[-shard-I-of-N]/<timestamp>/campaign.json`,
//! rewritten after every test, so a campaign that dies still says what it
//! ran, and read by `faultline serve` to list campaigns as well as runs.
//!
//! `campaign.json` holds the campaign file, seed, shard, the tests the
//! shard takes (position, name, seed, skip reason), the table's rows so far
//! (each with its run's store folder), when it started and, once it is
//! done, when it finished and the command that reruns it. A folder is a
//! campaign's, not a run's, because it holds `campaign.json`; that is how
//! `faultline serve` tells them apart, whatever the names.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use super::shard::Shard;
use super::{PlannedTest, Row};
use crate::run::store::{utc_rfc3339, utc_stamp};

/// The file that marks a campaign's folder.
pub const CAMPAIGN_JSON: &str = "campaign.json";
/// Campaigns of the same file started within the same second get a suffix;
/// past this many the store refuses.
const MAX_SAME_SECOND: usize = 100;

/// One test a shard takes, as `--list` and `campaign.json` show it.
#[derive(Clone, Debug, Serialize)]
pub struct ListedTest {
    /// Its number in the whole campaign, from 0 in file order.
    pub position: usize,
    pub name: String,
    pub seed: u64,
    /// Why it is skipped, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip: Option<String>,
}

impl ListedTest {
    /// The listing of a planned test at `position`.
    pub fn of(position: usize, t: &PlannedTest) -> ListedTest {
        ListedTest {
            position,
            name: t.name.clone(),
            seed: t.config.seed,
            skip: t.skip.clone(),
        }
    }
}

/// What `campaign.json` holds.
#[derive(Clone, Debug, Serialize)]
struct Doc {
    faultline_campaign: u32,
    file: String,
    seed: u64,
    shard: String,
    started_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<String>,
    rerun: String,
    tests: Vec<ListedTest>,
    rows: Vec<Row>,
}

/// The campaign's folder and the document it keeps there.
#[derive(Debug)]
pub struct CampaignRecord {
    /// `store/campaign-<stem>[-shard-I-of-N]/<timestamp>`.
    pub dir: PathBuf,
    doc: Doc,
}

/// The folder name for a campaign file and shard.
pub fn folder_name(file: &Path, shard: Shard) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty() && !s.starts_with('.'))
        .unwrap_or_else(|| "campaign".into());
    if shard.is_whole() {
        format!("campaign-{stem}")
    } else {
        format!("campaign-{stem}-shard-{}-of-{}", shard.index, shard.count)
    }
}

/// The command that reruns this shard of the campaign.
pub fn rerun_command(file: &Path, seed: u64, shard: Shard) -> String {
    let mut cmd = format!("faultline campaign {} --seed {seed}", file.display());
    if !shard.is_whole() {
        cmd.push_str(&format!(" --shard {shard}"));
    }
    cmd
}

impl CampaignRecord {
    /// Creates the folder and writes `campaign.json` with no rows yet.
    pub fn create(
        store_root: &Path,
        file: &Path,
        seed: u64,
        shard: Shard,
        tests: Vec<ListedTest>,
    ) -> std::io::Result<CampaignRecord> {
        let now = SystemTime::now();
        let dir = new_folder(&store_root.join(folder_name(file, shard)), &utc_stamp(now))?;
        let doc = Doc {
            faultline_campaign: 1,
            file: file.display().to_string(),
            seed,
            shard: shard.to_string(),
            started_at: utc_rfc3339(now),
            finished_at: None,
            rerun: rerun_command(file, seed, shard),
            tests,
            rows: Vec::new(),
        };
        let record = CampaignRecord { dir, doc };
        record.write()?;
        Ok(record)
    }

    /// Adds a test's rows and rewrites `campaign.json`.
    pub fn add_rows(&mut self, rows: &[Row]) -> std::io::Result<()> {
        self.doc.rows.extend_from_slice(rows);
        self.write()
    }

    /// Marks the campaign finished and rewrites `campaign.json`.
    pub fn finish(&mut self) -> std::io::Result<()> {
        self.doc.finished_at = Some(utc_rfc3339(SystemTime::now()));
        self.write()
    }

    /// Writes the document through a temporary file and a rename, so a
    /// reader (`faultline serve`) never sees half of it.
    fn write(&self) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(&self.doc).expect("the campaign document serializes");
        let tmp = self.dir.join(format!(".{CAMPAIGN_JSON}.tmp"));
        std::fs::write(&tmp, text + "\n")?;
        std::fs::rename(&tmp, self.dir.join(CAMPAIGN_JSON))
    }
}

/// Creates `base/<stamp>` (or `<stamp>-n` when taken) and returns it.
fn new_folder(base: &Path, stamp: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(base)?;
    for i in 0..MAX_SAME_SECOND {
        let dir = if i == 0 {
            base.join(stamp)
        } else {
            base.join(format!("{stamp}-{i}"))
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "more than {MAX_SAME_SECOND} campaigns in {} in one second",
        base.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_say_the_file_and_the_shard() {
        let f = Path::new("ci/campaigns/lab.toml");
        assert_eq!(folder_name(f, Shard::WHOLE), "campaign-lab");
        assert_eq!(
            folder_name(f, Shard { index: 2, count: 4 }),
            "campaign-lab-shard-2-of-4"
        );
        assert_eq!(
            rerun_command(f, 7, Shard { index: 2, count: 4 }),
            "faultline campaign ci/campaigns/lab.toml --seed 7 --shard 2/4"
        );
        assert_eq!(
            rerun_command(f, 7, Shard::WHOLE),
            "faultline campaign ci/campaigns/lab.toml --seed 7"
        );
    }

    #[test]
    fn the_record_is_rewritten_whole_after_each_test() {
        let tmp = tempfile::tempdir().unwrap();
        let tests = vec![ListedTest {
            position: 1,
            name: "t".into(),
            seed: 8,
            skip: None,
        }];
        let mut rec = CampaignRecord::create(tmp.path(), Path::new("c.toml"), 7, Shard::WHOLE, tests).unwrap();
        let again = CampaignRecord::create(tmp.path(), Path::new("c.toml"), 7, Shard::WHOLE, Vec::new()).unwrap();
        assert_ne!(rec.dir, again.dir, "two campaigns in one second get two folders");
        let row = Row {
            test: "t".into(),
            checker: "linearizable".into(),
            expected: super::super::Expect::Pass,
            observed: "valid".into(),
            holds: true,
            anomalies: 0,
            expected_anomalies: None,
            anomaly_types: None,
            seed: 8,
            store: Some("store/t/20261205T000000Z".into()),
            note: None,
        };
        rec.add_rows(&[row]).unwrap();
        rec.finish().unwrap();
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(rec.dir.join(CAMPAIGN_JSON)).unwrap()).unwrap();
        assert_eq!(doc["shard"], "1/1");
        assert_eq!(doc["tests"][0]["position"], 1);
        assert_eq!(doc["rows"][0]["store"], "store/t/20261205T000000Z");
        assert!(doc["finished_at"].is_string());
        assert!(!rec.dir.join(format!(".{CAMPAIGN_JSON}.tmp")).exists());
    }
}
