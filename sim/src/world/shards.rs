//! The node layer between the clients and a node's cores: which core
//! serves a request, and what a core's forward means.
//!
//! Promise: in a world of one shard a client's request goes to the node's
//! one core, and a forward is a certain failure naming the leader (the
//! simulated clients call the leader themselves, as the harness's client
//! does after a redirect).

use super::World;
use crate::cores::Driven;
use faultline_server::config::Settings;
use faultline_server::core::{Answer, Request};

/// Each shard's first leader: the node the server's configuration names
/// for it (one shard: the first node).
pub(super) fn initial_leaders(names: &[String], settings: &Settings) -> Vec<String> {
    (0..settings.shards.max(1)).map(|_| names[0].clone()).collect()
}

/// What the node layer keeps in flight.
pub(super) struct Layer {}

impl Layer {
    pub(super) fn new(_shards: usize) -> Layer {
        Layer {}
    }

    /// Whether `token` names a request the layer made or forwarded.
    pub(super) fn owns(&self, _token: u64) -> bool {
        false
    }

    /// Whether a piece the layer sent waits at `node`.
    pub(super) fn waits_at(&self, _node: usize) -> bool {
        false
    }

    /// `node` died: what it was splitting is gone.
    pub(super) fn crashed(&mut self, _node: usize) {}
}

impl<C: Driven> World<C> {
    /// A client's request reaches `node`.
    pub(super) fn client_request(&mut self, node: usize, req: Request) {
        self.serve_at(node, 0, req);
    }

    /// `node`'s core of `shard` is not the leader.
    pub(super) fn forward(&mut self, node: usize, _shard: usize, req: Request, leader: String) {
        let mut answer = Answer::fail(req.id, "not the leader");
        answer.leader_hint = Some(leader);
        self.answered(node, req.token, &answer);
    }

    pub(super) fn layer_answered(&mut self, _node: usize, _token: u64, _answer: &Answer) {}
}
