//! The driver against peers played by the test over real sockets.

use super::*;
use crate::core::Message;
use crate::protocol::read_frame;
use crate::state::Entry;
use crate::transport::{Envelope, PEER_MAX_FRAME_BYTES};
use tokio::net::TcpListener;

/// One group ("n3") with two peers played by the test: every message
/// the group sends arrives on `sent` as (peer, message), and the test
/// answers through `group.deliver`.
struct Harness {
    group: GroupHandle,
    sent: mpsc::UnboundedReceiver<(String, PeerMsg)>,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start() -> Harness {
        let (tx, sent) = mpsc::unbounded_channel();
        let mut peers = BTreeMap::new();
        for id in ["n1", "n2"] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            peers.insert(id.to_string(), listener.local_addr().unwrap().to_string());
            tokio::spawn(play_peer(id, listener, tx.clone()));
        }
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            node_id: "n3".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_path_buf(),
            settings: crate::config::Settings::parse(
                "ack=majority,failover=fenced,fsync=never,heartbeat_ms=20,election_timeout_ms=100",
            )
            .unwrap(),
            peers,
        }
        .validate()
        .unwrap();
        let transport = Transport::start("n3", &cfg.peers);
        let group = start(Arc::new(cfg), 0, transport).unwrap();
        Harness { group, sent, _dir: dir }
    }

    /// The next message the group sends that `want` accepts (bounded).
    async fn expect<T>(&mut self, what: &str, mut want: impl FnMut(&str, &PeerMsg) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.sent.recv()).await {
                Ok(Some((to, msg))) => {
                    if let Some(found) = want(&to, &msg) {
                        return found;
                    }
                }
                _ => panic!("the group never sent {what}"),
            }
        }
    }

    /// Makes "n3" a follower of epoch 3 whose log ends at (lsn 3, epoch 3).
    async fn follow_epoch_3(&mut self) {
        let entries = [(1, 1), (2, 3), (3, 3)]
            .map(|(lsn, epoch)| Entry {
                lsn,
                epoch,
                cmd: crate::state::Command::Noop,
            })
            .to_vec();
        let append = PeerMsg::Core(Message::Append {
            epoch: 3,
            prev_lsn: 0,
            prev_epoch: 0,
            entries,
            commit_lsn: 0,
            seq: 1,
        });
        self.group.deliver("n1".into(), append).await;
        self.expect("an append answer", |_, m| match m {
            PeerMsg::Core(Message::AppendResp { match_lsn: 3, .. }) => Some(()),
            _ => None,
        })
        .await;
    }
}

/// Accepts the group's link to `id` and reports every envelope on it.
async fn play_peer(id: &'static str, listener: TcpListener, tx: mpsc::UnboundedSender<(String, PeerMsg)>) {
    while let Ok((stream, _)) = listener.accept().await {
        let mut rd = tokio::io::BufReader::new(stream);
        let _hello = read_frame(&mut rd, PEER_MAX_FRAME_BYTES).await;
        while let Ok(Some(frame)) = read_frame(&mut rd, PEER_MAX_FRAME_BYTES).await {
            let env: Envelope = serde_json::from_slice(&frame).unwrap();
            if tx.send((id.to_string(), env.msg)).is_err() {
                return;
            }
        }
    }
}

#[tokio::test]
async fn a_connection_slot_answers_once_and_unknown_when_dropped() {
    let slots = Arc::new(tokio::sync::Semaphore::new(2));
    let budgets = Arc::new(Budgets::new(2 << 20, &crate::limits::NodeBudget::new(2 << 20)));
    let (out, mut frames) = mpsc::channel(2);
    let slot = || slots.clone().try_acquire_owned().unwrap();
    let answered = ConnReply::new(out.clone(), 7, slot(), budgets.clone(), Held::default());
    let dropped = ConnReply::new(out, 8, slot(), budgets, Held::default());
    answered.send(&Reply::new(7, crate::protocol::Outcome::Ok));
    drop(dropped);
    let mut replies = Vec::new();
    let mut queued = Vec::new();
    while let Ok(o) = frames.try_recv() {
        let reply: Reply = serde_json::from_slice(&o.frame[4..]).unwrap();
        replies.push((reply.id, reply.result));
        queued.push(o);
    }
    use crate::protocol::Outcome;
    assert_eq!(replies, [(7, Outcome::Ok), (8, Outcome::Unknown)]);
    assert_eq!(slots.available_permits(), 0, "a queued frame holds its slot");
    drop(queued);
    assert_eq!(slots.available_permits(), 2, "written frames give their slots back");
}

#[tokio::test]
async fn a_refused_pre_vote_from_a_later_epoch_moves_the_candidate_past_it() {
    // n3 has the better log (3, epoch 3); n2 has seen epoch 4 but holds
    // an older log, and n1 is gone. n3 must end up asking for epoch 5,
    // which n2 can grant; asking for 4 forever left the group leaderless.
    let mut h = Harness::start().await;
    h.follow_epoch_3().await;
    h.expect("a pre-vote for epoch 4", |_, m| match m {
        PeerMsg::Core(Message::PreVote {
            epoch: 4, last_lsn: 3, ..
        }) => Some(()),
        _ => None,
    })
    .await;
    let refusal = PeerMsg::Core(Message::PreVoteResp {
        epoch: 4,
        granted: false,
        voter_epoch: 4,
    });
    h.group.deliver("n2".into(), refusal).await;
    h.expect("a pre-vote for epoch 5", |_, m| match m {
        PeerMsg::Core(Message::PreVote { epoch: 5, .. }) => Some(()),
        _ => None,
    })
    .await;
    let grant = PeerMsg::Core(Message::PreVoteResp {
        epoch: 5,
        granted: true,
        voter_epoch: 4,
    });
    h.group.deliver("n2".into(), grant).await;
    h.expect("a vote request for epoch 5", |_, m| match m {
        PeerMsg::Core(Message::Vote { epoch: 5, .. }) => Some(()),
        _ => None,
    })
    .await;
    let vote = PeerMsg::Core(Message::VoteResp {
        epoch: 5,
        granted: true,
    });
    h.group.deliver("n2".into(), vote).await;
    let status = h.group.status().await.unwrap();
    assert_eq!((status.role.as_str(), status.epoch), ("leader", 5), "{status:?}");
}

#[tokio::test]
async fn a_pre_vote_refusal_names_the_voters_epoch() {
    let mut h = Harness::start().await;
    h.follow_epoch_3().await;
    let stale = PeerMsg::Core(Message::PreVote {
        epoch: 2,
        last_lsn: 9,
        last_epoch: 1,
    });
    h.group.deliver("n2".into(), stale).await;
    let (granted, voter_epoch) = h
        .expect("an answer to n2's pre-vote", |to, m| match m {
            PeerMsg::Core(Message::PreVoteResp {
                epoch: 2,
                granted,
                voter_epoch,
            }) if to == "n2" => Some((*granted, *voter_epoch)),
            _ => None,
        })
        .await;
    assert_eq!((granted, voter_epoch), (false, 3));
}
