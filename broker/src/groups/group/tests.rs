//! The classic rebalance state machine without a broker: joins, syncs,
//! heartbeats, leaves, session expiry and static membership.

use std::time::Duration;

use bytes::Bytes;
use skiff_wire::kafka_protocol::error::ResponseError as E;
use tokio::time::Instant;

use super::*;
use crate::groups::config::GroupConfig;

fn req(member: &str, instance: Option<&str>) -> JoinRequest {
    JoinRequest {
        member_id: member.into(),
        instance_id: instance.map(String::from),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
        require_known_member_id: true,
    }
}

fn now_result(r: Reply<JoinResult>) -> JoinResult {
    match r {
        Reply::Now(r) => r,
        Reply::Wait(_) => panic!("expected an immediate answer"),
    }
}

fn waited<T>(r: Reply<T>) -> tokio::sync::oneshot::Receiver<T> {
    match r {
        Reply::Wait(rx) => rx,
        Reply::Now(_) => panic!("expected to wait"),
    }
}

/// A new member: MEMBER_ID_REQUIRED, then the join with that id.
fn join_new(
    g: &mut Group,
    now: Instant,
    cfg: &GroupConfig,
) -> (String, tokio::sync::oneshot::Receiver<JoinResult>) {
    let mut p = false;
    let first = now_result(g.join(req("", None), now, cfg, &mut p));
    assert_eq!(first.error, E::MemberIdRequired.code());
    let id = first.member_id.clone();
    (id.clone(), waited(g.join(req(&id, None), now, cfg, &mut p)))
}

#[test]
fn two_members_join_sync_and_rebalance_on_leave() {
    let cfg = GroupConfig::no_delay();
    let mut g = Group::new("g".into(), 0);
    let now = Instant::now();
    let mut p = false;
    let (a, mut ra) = join_new(&mut g, now, &cfg);
    // The first member completes the join alone (no initial delay).
    let ja = ra.try_recv().expect("join completed");
    assert_eq!(ja.error, 0);
    assert_eq!(ja.generation, 1);
    assert_eq!(ja.leader, a);
    assert_eq!(ja.members.len(), 1);
    let sa = waited(g.sync(
        &a,
        None,
        1,
        Some("consumer"),
        Some("range"),
        vec![(a.clone(), Bytes::from_static(b"A"))],
        now,
        &mut p,
    ));
    assert!(p, "a stable generation is persisted");
    assert_eq!(g.state, GroupState::Stable);
    let mut sa = sa;
    assert_eq!(sa.try_recv().unwrap().assignment, Bytes::from_static(b"A"));

    // A second member triggers a rebalance; the first learns by heartbeat.
    let (b, mut rb) = join_new(&mut g, now, &cfg);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert_eq!(g.heartbeat(&a, None, 1, now), E::RebalanceInProgress.code());
    assert!(
        rb.try_recv().is_err(),
        "waits for the first member to rejoin"
    );
    let mut ra = waited(g.join(req(&a, None), now, &cfg, &mut p));
    let (ja, jb) = (ra.try_recv().unwrap(), rb.try_recv().unwrap());
    assert_eq!((ja.generation, jb.generation), (2, 2));
    assert_eq!(ja.members.len(), 2, "the leader gets every member");
    assert!(jb.members.is_empty());
    // Old generation is refused.
    assert_eq!(g.heartbeat(&a, None, 1, now), E::IllegalGeneration.code());
    assert_eq!(
        g.heartbeat("nobody", None, 2, now),
        E::UnknownMemberId.code()
    );
    let mut sb = waited(g.sync(&b, None, 2, None, None, vec![], now, &mut p));
    assert!(sb.try_recv().is_err(), "followers wait for the leader");
    let _ = g.sync(
        &a,
        None,
        2,
        None,
        None,
        vec![
            (a.clone(), Bytes::from_static(b"A2")),
            (b.clone(), Bytes::from_static(b"B2")),
        ],
        now,
        &mut p,
    );
    assert_eq!(sb.try_recv().unwrap().assignment, Bytes::from_static(b"B2"));

    // b leaves: a rebalance of one.
    assert_eq!(g.leave(&b, None, now, &mut p), 0);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let mut ra = waited(g.join(req(&a, None), now, &cfg, &mut p));
    assert_eq!(ra.try_recv().unwrap().generation, 3);
    assert_eq!(
        g.leave("ghost", None, now, &mut p),
        E::UnknownMemberId.code()
    );
}

#[test]
fn inconsistent_protocols_and_bad_session_timeouts_are_refused() {
    let cfg = GroupConfig::no_delay();
    let mut g = Group::new("g".into(), 0);
    let now = Instant::now();
    let mut p = false;
    let (_a, _ra) = join_new(&mut g, now, &cfg);
    let mut other = req("", None);
    other.protocol_type = "connect".into();
    assert_eq!(
        now_result(g.join(other, now, &cfg, &mut p)).error,
        E::InconsistentGroupProtocol.code()
    );
    let mut other = req("", None);
    other.protocols = vec![("roundrobin".into(), Bytes::new())];
    assert_eq!(
        now_result(g.join(other, now, &cfg, &mut p)).error,
        E::InconsistentGroupProtocol.code()
    );
    let mut short = req("", None);
    short.session_timeout_ms = 10;
    assert_eq!(
        now_result(g.join(short, now, &cfg, &mut p)).error,
        E::InvalidSessionTimeout.code()
    );
    assert_eq!(
        now_result(g.join(req("made-up", None), now, &cfg, &mut p)).error,
        E::UnknownMemberId.code()
    );
}

#[test]
fn expired_sessions_leave_the_group() {
    let cfg = GroupConfig::no_delay();
    let mut g = Group::new("g".into(), 0);
    let now = Instant::now();
    let mut p = false;
    let (a, _ra) = join_new(&mut g, now, &cfg);
    let _ = g.sync(&a, None, 1, None, None, vec![], now, &mut p);
    p = false;
    g.tick(now + Duration::from_secs(5), &mut p);
    assert_eq!(g.members.len(), 1, "still within the session");
    g.tick(now + Duration::from_secs(11), &mut p);
    assert!(g.members.is_empty());
    assert_eq!(g.state, GroupState::Empty);
    assert!(p, "the emptied group is persisted");
}

#[test]
fn static_member_rejoin_replaces_the_old_id_without_rebalance() {
    let cfg = GroupConfig::no_delay();
    let mut g = Group::new("g".into(), 0);
    let now = Instant::now();
    let mut p = false;
    let mut ra = waited(g.join(req("", Some("i1")), now, &cfg, &mut p));
    let a = ra.try_recv().unwrap().member_id;
    let _ = g.sync(
        &a,
        None,
        1,
        None,
        None,
        vec![(a.clone(), Bytes::from_static(b"A"))],
        now,
        &mut p,
    );
    assert_eq!(g.state, GroupState::Stable);
    // Restart: same instance id, no member id.
    let r = now_result(g.join(req("", Some("i1")), now, &cfg, &mut p));
    assert_eq!(r.error, 0);
    assert_eq!(r.generation, 1, "no new generation");
    assert_ne!(r.member_id, a);
    assert_eq!(g.state, GroupState::Stable);
    let mut s = match g.sync(&r.member_id, Some("i1"), 1, None, None, vec![], now, &mut p) {
        Reply::Now(s) => s,
        Reply::Wait(mut rx) => rx.try_recv().unwrap(),
    };
    assert_eq!(
        std::mem::take(&mut s.assignment),
        Bytes::from_static(b"A"),
        "keeps its assignment"
    );
    // The old incarnation is fenced.
    assert_eq!(
        g.heartbeat(&a, Some("i1"), 1, now),
        E::FencedInstanceId.code()
    );
    assert_eq!(
        g.leave(&a, Some("i1"), now, &mut p),
        E::FencedInstanceId.code()
    );
    assert_eq!(g.leave("", Some("i1"), now, &mut p), 0);
    assert!(g.members.is_empty());
}

#[test]
fn commits_are_checked_against_membership() {
    let cfg = GroupConfig::no_delay();
    let mut g = Group::new("g".into(), 0);
    assert_eq!(
        g.check_commit("", None, -1),
        0,
        "simple commits to an empty group"
    );
    let now = Instant::now();
    let (a, _ra) = join_new(&mut g, now, &cfg);
    assert_eq!(g.check_commit("", None, -1), E::UnknownMemberId.code());
    assert_eq!(
        g.check_commit(&a, None, 1),
        E::RebalanceInProgress.code(),
        "before sync"
    );
    let mut p = false;
    let _ = g.sync(&a, None, 1, None, None, vec![], now, &mut p);
    assert_eq!(g.check_commit(&a, None, 1), 0);
    assert_eq!(g.check_commit(&a, None, 7), E::IllegalGeneration.code());
}

#[test]
fn the_initial_delay_waits_for_more_members() {
    let cfg = GroupConfig {
        initial_rebalance_delay: Duration::from_millis(500),
        ..GroupConfig::default()
    };
    let mut g = Group::new("g".into(), 0);
    let now = Instant::now();
    let (_a, mut ra) = join_new(&mut g, now, &cfg);
    assert!(ra.try_recv().is_err());
    let (_b, mut rb) = join_new(&mut g, now + Duration::from_millis(100), &cfg);
    let mut p = false;
    g.tick(now + Duration::from_millis(550), &mut p);
    assert!(
        ra.try_recv().is_err(),
        "the delay was extended by the second join"
    );
    g.tick(now + Duration::from_millis(650), &mut p);
    assert_eq!(ra.try_recv().unwrap().generation, 1);
    assert_eq!(rb.try_recv().unwrap().generation, 1);
}
