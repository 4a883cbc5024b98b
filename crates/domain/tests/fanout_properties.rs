//! Properties of the local fan-out under any interleaving of subscribe, drop, read and deliver:
//! every live subscription of a user gets each of that user's events exactly once, in order,
//! from when it subscribed until it is dropped; other users' subscriptions get none of them;
//! a subscriber that does not read is cut off (lagged) without touching anyone else.

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt;
use imgate_domain::fanout::LocalFanout;
use imgate_domain::ports::EventSubscription;
use imgate_domain::{RoomId, UserEvent, UserId};
use proptest::prelude::*;

const USERS: [&str; 3] = ["alice", "bob", "carol"];

#[derive(Debug, Clone)]
enum Op {
    Subscribe(usize),
    /// Drops the n-th live subscription (modulo how many there are).
    Drop(usize),
    /// Reads everything the n-th live subscription has buffered.
    Read(usize),
    Deliver(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..USERS.len()).prop_map(Op::Subscribe),
        any::<usize>().prop_map(Op::Drop),
        any::<usize>().prop_map(Op::Read),
        (0..USERS.len()).prop_map(Op::Deliver),
        (0..USERS.len()).prop_map(Op::Deliver),
    ]
}

fn user(index: usize) -> UserId {
    UserId::parse(USERS[index]).unwrap()
}

fn event(n: u64) -> Arc<UserEvent> {
    Arc::new(UserEvent::Typing {
        room_id: RoomId::parse("room").unwrap(),
        username: n.to_string(),
        typing: true,
    })
}

/// One live subscription and what it should see.
struct Live {
    user: usize,
    feed: EventSubscription,
    expected: Vec<u64>,
    got: Vec<u64>,
    cut_off: bool,
}

impl Live {
    /// Reads what is buffered without waiting.
    fn read(&mut self) {
        loop {
            match self.feed.next().now_or_never() {
                Some(Some(event)) => match &*event {
                    UserEvent::Typing { username, .. } => self.got.push(username.parse().unwrap()),
                    other => panic!("unexpected event {other:?}"),
                },
                Some(None) => {
                    self.cut_off = true;
                    return;
                }
                None => return,
            }
        }
    }

    fn check(&self) {
        if self.cut_off {
            assert!(self.feed.lagged(), "a feed only ends early when it lags");
            // Cut off at some point: what it got is a prefix of what it should have got.
            assert_eq!(self.got[..], self.expected[..self.got.len()]);
        } else {
            assert_eq!(self.got, self.expected);
        }
    }
}

fn run(ops: Vec<Op>, capacity: usize) {
    // Room for every event: nobody can fall behind.
    let roomy = capacity >= ops.len();
    let fanout = LocalFanout::new(capacity);
    let mut live: Vec<Live> = Vec::new();
    let mut next = 0u64;
    for op in ops {
        match op {
            Op::Subscribe(u) => live.push(Live {
                user: u,
                feed: fanout.subscribe(&user(u)),
                expected: Vec::new(),
                got: Vec::new(),
                cut_off: false,
            }),
            Op::Drop(n) if !live.is_empty() => {
                let mut gone = live.remove(n % live.len());
                gone.read();
                gone.check();
            }
            Op::Read(n) if !live.is_empty() => {
                let len = live.len();
                live[n % len].read();
            }
            Op::Deliver(u) => {
                next += 1;
                let delivered = fanout.deliver(&user(u), event(next));
                let mut receivers = 0;
                for subscription in live.iter_mut().filter(|l| l.user == u) {
                    subscription.expected.push(next);
                    if !subscription.feed.lagged() {
                        receivers += 1;
                    }
                }
                // Everyone not cut off before this event got it, or is cut off now.
                assert!(delivered <= receivers, "{delivered} > {receivers}");
                if roomy {
                    assert_eq!(delivered, receivers);
                }
            }
            Op::Drop(_) | Op::Read(_) => {}
        }
    }
    let mut per_user: HashMap<usize, usize> = HashMap::new();
    for subscription in &mut live {
        subscription.read();
        subscription.check();
        assert!(
            !(roomy && subscription.cut_off),
            "cut off with room to spare"
        );
        if !subscription.cut_off {
            *per_user.entry(subscription.user).or_default() += 1;
        }
    }
    for (u, count) in per_user {
        assert!(fanout.subscriber_count(&user(u)) >= count);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// With room for every event, nobody lags: exactly once, in order, for everyone.
    #[test]
    fn every_subscription_gets_its_users_events_once_in_order(ops in prop::collection::vec(op(), 0..200)) {
        run(ops, 256);
    }

    /// With small buffers some subscribers are cut off; what each got is still a gap-free,
    /// duplicate-free prefix, and those that kept up got everything.
    #[test]
    fn small_buffers_cut_off_only_the_subscribers_that_fall_behind(ops in prop::collection::vec(op(), 0..200)) {
        run(ops, 3);
    }
}
