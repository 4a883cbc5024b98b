//! The soak: steady load on one gateway for a long time, with connections and users coming
//! and going, while the gateway's memory and descriptors are sampled.
//!
//! Users in rooms (a ring of direct rooms and a few private groups) hold hub connections
//! that are closed and replaced all the time; a separate set of users is deleted and created
//! again in turn; messages go in through REST at a fixed rate, reads alongside. Every
//! connection counts what it receives, and [`ledger`] checks that each message reached the
//! connections that were owed it.

pub mod ledger;
pub mod report;
pub mod stats;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::GatewayApi;
use crate::procfs;
use crate::signalr::{HubClient, Incoming};
use ledger::Ledger;
use report::{GatewayGauges, Row};
use stats::Stats;

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// How long the load runs.
    pub duration: Duration,
    /// Users that stay, each in two direct rooms (a ring) and some in a group.
    pub room_users: usize,
    /// Users that are deleted and created again in turn.
    pub churn_users: usize,
    /// Private groups among the room users.
    pub groups: usize,
    /// Members per group.
    pub group_size: usize,
    /// Hub connections to hold.
    pub connections: usize,
    /// At most this many connections per user.
    pub max_per_user: usize,
    /// Connections closed and replaced each second.
    pub connection_churn_per_s: usize,
    /// A churn user is deleted and created again this often.
    pub user_churn_every: Duration,
    /// Messages sent per second.
    pub messages_per_s: f64,
    /// Reads per second.
    pub reads_per_s: f64,
    /// How often the gateway is sampled.
    pub sample_every: Duration,
    /// The gateway's process id, for RSS and descriptors.
    pub gateway_pid: Option<u32>,
    /// See [`ledger`]: how long a connection must be open before a send to be owed it.
    pub settle: Duration,
    /// See [`ledger`]: how long after the acknowledgement deliveries are checked.
    pub deadline: Duration,
    /// After closing every connection, how long to wait before the last sample; longer
    /// than the gateway's `realtime.grace_s`, so idle upstreams have closed.
    pub after_wait: Duration,
    /// Prefix of the user ids and group names.
    pub prefix: String,
}

impl SoakConfig {
    /// The load in sentences, for the report.
    pub fn describe(&self) -> Vec<String> {
        vec![
            format!(
                "Load for {} s: {} users in rooms ({} direct rooms in a ring, {} private groups of {}), \
                 and {} more users deleted and created again in turn, one every {} s, each then opening a \
                 direct room with a random room user and writing in it",
                self.duration.as_secs(),
                self.room_users,
                self.room_users,
                self.groups,
                self.group_size,
                self.churn_users,
                self.user_churn_every.as_secs_f64(),
            ),
            format!(
                "Hub connections (WebSockets, negotiate v1): {} held, at most {} per user; every second {} \
                 are closed and replaced by new ones of random users, so users go offline and online and \
                 their upstreams open and close",
                self.connections, self.max_per_user, self.connection_churn_per_s,
            ),
            format!(
                "REST: {} messages a second (a private group one time in five, a churn user's direct room one \
                 time in ten, else a direct room of the ring; a random member sends), {} reads a second \
                 (history, unread, room list, mark read in turn, in the ring's rooms)",
                self.messages_per_s, self.reads_per_s,
            ),
        ]
    }
}

/// What a run found.
pub struct Outcome {
    /// Samples: `0` right before the load, one per `sample_every`, and `after`.
    pub rows: Vec<Row>,
    /// The first misses of the delivery check, described.
    pub misses: Vec<String>,
}

/// Connections being opened at once, at most, per second of the manager.
const OPEN_BURST: usize = 50;
/// Budget for negotiate, WebSocket and handshake together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// REST calls in flight at most; beyond it a tick is skipped and counted.
const IN_FLIGHT: usize = 64;
/// How long the gateway gets to close a deleted user's connections.
const DELETION_CLOSES_WITHIN: Duration = Duration::from_secs(5);
/// One message in this many goes to a group.
const GROUP_EVERY: u32 = 5;
/// One message in this many goes to the direct room of a churn user.
const CHURN_ROOM_EVERY: u32 = 10;

struct Pool {
    /// Connections with a finished handshake, by the driver's id.
    open: HashMap<u64, (usize, CancellationToken)>,
    /// Connections being opened, per user.
    opening: Vec<usize>,
    /// Open connections, per user.
    per_user: Vec<usize>,
    /// Whether a user exists (churn users are missing for a moment).
    present: Vec<bool>,
    next_id: u64,
}

impl Pool {
    fn remove(&mut self, id: u64) -> Option<CancellationToken> {
        let (user, stop) = self.open.remove(&id)?;
        self.per_user[user] -= 1;
        Some(stop)
    }
}

struct Shared {
    config: SoakConfig,
    api: GatewayApi,
    /// Host ids: room users first, churn users after.
    users: Vec<String>,
    /// Room indices: the ring of direct rooms, then the groups.
    ring: Vec<usize>,
    groups: Vec<usize>,
    /// The current direct room of each churn user that exists.
    churn_rooms: Mutex<HashMap<usize, usize>>,
    run_tag: String,
    stats: Stats,
    ledger: Mutex<Ledger>,
    pool: Mutex<Pool>,
    in_flight: Arc<Semaphore>,
    connections: TaskTracker,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is a few map edits, so a poisoned lock still holds usable state.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        lock(&self.pool)
    }

    fn text(&self, seq: u64) -> String {
        format!("soak {} {seq}", self.run_tag)
    }

    /// The sequence number in a text this run wrote.
    fn seq(&self, text: &str) -> Option<u64> {
        let rest = text.strip_prefix("soak ")?;
        let (tag, seq) = rest.split_once(' ')?;
        (tag == self.run_tag).then(|| seq.parse().ok()).flatten()
    }
}

/// Runs the soak against `api`'s gateway: sets up users and rooms, runs the load for
/// `config.duration`, stops it, and samples once more when everything is closed.
pub async fn run(api: GatewayApi, config: SoakConfig) -> anyhow::Result<Outcome> {
    let shared = set_up(api, config).await?;
    let mut rows = vec![sample(&shared, "0".into()).await];
    let load = CancellationToken::new();
    let checker = CancellationToken::new();
    let load_tasks = vec![
        tokio::spawn(manage_connections(shared.clone(), load.clone())),
        tokio::spawn(churn_users(shared.clone(), load.clone())),
        tokio::spawn(send_messages(shared.clone(), load.clone())),
        tokio::spawn(read(shared.clone(), load.clone())),
    ];
    let check = tokio::spawn(check_deliveries(shared.clone(), checker.clone()));

    let start = tokio::time::Instant::now();
    let end = start + shared.config.duration;
    let mut next = start + shared.config.sample_every;
    loop {
        let at = next.min(end);
        tokio::time::sleep_until(at).await;
        rows.push(sample(&shared, minutes(at - start)).await);
        if at >= end {
            break;
        }
        next += shared.config.sample_every;
    }

    println!("[soak] stopping the load");
    load.cancel();
    for task in load_tasks {
        let _ = task.await;
    }
    // Every send in flight ends, and gets its deadline, before the last check.
    let _all = tokio::time::timeout(
        Duration::from_secs(60),
        shared.in_flight.acquire_many(IN_FLIGHT as u32),
    )
    .await;
    tokio::time::sleep(shared.config.deadline + Duration::from_secs(1)).await;
    checker.cancel();
    let _ = check.await;
    shared.ledger().check(Instant::now());

    close_all(&shared).await;
    tokio::time::sleep(shared.config.after_wait).await;
    rows.push(sample(&shared, "after".into()).await);

    let ledger = shared.ledger();
    let misses = ledger
        .misses()
        .iter()
        .map(|miss| {
            report::describe_miss(miss, &ledger.room(miss.room).id, &shared.users[miss.user])
        })
        .collect();
    Ok(Outcome { rows, misses })
}

/// Waits for the gateway, creates the users, the ring of direct rooms, the groups and the
/// churn users' first direct rooms.
async fn set_up(api: GatewayApi, config: SoakConfig) -> anyhow::Result<Arc<Shared>> {
    let started = Instant::now();
    while !api.ready().await {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the gateway at {} is not ready after 30 s", api.base());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if config.room_users < 2 || config.groups * config.group_size > config.room_users {
        bail!("need at least 2 room users, and room users for every group member");
    }
    let run_tag = format!("{:08x}", rand::random::<u32>());
    let users: Vec<String> = (0..config.room_users)
        .map(|i| format!("{}-u{i:04}", config.prefix))
        .chain((0..config.churn_users).map(|i| format!("{}-c{i:04}", config.prefix)))
        .collect();
    let total = users.len();
    println!("[soak] run {run_tag}: creating {total} users and their rooms");
    futures::stream::iter(users.iter())
        .map(|user| {
            let api = &api;
            async move {
                api.put_user(user)
                    .await
                    .with_context(|| format!("creating {user}"))
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;

    let mut ledger = Ledger::new(config.settle, config.deadline);
    let n = config.room_users;
    let ring_ids = futures::stream::iter(0..n)
        .map(|i| {
            let api = &api;
            let (a, b) = (&users[i], &users[(i + 1) % n]);
            async move {
                api.direct_room(a, b)
                    .await
                    .with_context(|| format!("direct room of {a} and {b}"))
            }
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await;
    let mut ring = Vec::new();
    for (i, id) in ring_ids.into_iter().enumerate() {
        ring.push(ledger.add_room(id?, vec![i, (i + 1) % n]));
    }
    let mut groups = Vec::new();
    for g in 0..config.groups {
        let members: Vec<usize> = (0..config.group_size)
            .map(|j| g + j * config.groups)
            .collect();
        let names: Vec<String> = members[1..].iter().map(|&m| users[m].clone()).collect();
        let name = format!("{}-{run_tag}-g{g}", config.prefix);
        let id = api
            .create_group(&users[members[0]], &name, &names)
            .await
            .with_context(|| format!("creating group {name}"))?;
        groups.push(ledger.add_room(id, members));
    }

    let shared = Arc::new(Shared {
        api,
        users,
        ring,
        groups,
        churn_rooms: Mutex::new(HashMap::new()),
        run_tag,
        stats: Stats::default(),
        ledger: Mutex::new(ledger),
        pool: Mutex::new(Pool {
            open: HashMap::new(),
            opening: vec![0; total],
            per_user: vec![0; total],
            present: vec![true; total],
            next_id: 0,
        }),
        in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
        connections: TaskTracker::new(),
        config,
    });

    for user in n..total {
        open_churn_room(&shared, user)
            .await
            .with_context(|| format!("direct room of {}", shared.users[user]))?;
    }
    Ok(shared)
}

/// Closes every connection the driver holds and waits for them to end.
async fn close_all(shared: &Shared) {
    let stops: Vec<CancellationToken> = {
        let mut pool = shared.pool();
        let ids: Vec<u64> = pool.open.keys().copied().collect();
        ids.into_iter().filter_map(|id| pool.remove(id)).collect()
    };
    for stop in stops {
        stop.cancel();
    }
    shared.connections.close();
    if tokio::time::timeout(Duration::from_secs(30), shared.connections.wait())
        .await
        .is_err()
    {
        shared.stats.error("connections_not_closed_at_end");
    }
}

/// "3" for three minutes, "0.5" for thirty seconds.
fn minutes(elapsed: Duration) -> String {
    let minutes = elapsed.as_secs_f64() / 60.0;
    if (minutes - minutes.round()).abs() < 0.01 {
        format!("{:.0}", minutes.round())
    } else {
        format!("{minutes:.1}")
    }
}

async fn sample(shared: &Shared, label: String) -> Row {
    let process = match shared.config.gateway_pid {
        None => None,
        Some(pid) => match procfs::sample(pid).await {
            Ok(sample) => Some(sample),
            Err(_) => {
                shared.stats.error("gateway_process_unreadable");
                None
            }
        },
    };
    let gateway = match shared.api.metrics().await {
        Ok(text) => GatewayGauges::parse(&text),
        Err(err) => {
            shared.stats.error(format!("metrics_{}", err.kind()));
            GatewayGauges::default()
        }
    };
    let row = Row {
        label,
        process,
        open_connections: shared.pool().open.len() as u64,
        gateway,
        counters: shared.stats.snapshot(),
        tally: shared.ledger().tally(),
    };
    println!("{}", row.line());
    row
}

/// Keeps `connections` open, closing `connection_churn_per_s` random ones each second and
/// opening new ones of random present users in their place.
async fn manage_connections(shared: Arc<Shared>, load: CancellationToken) {
    let config = &shared.config;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = load.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut to_open = Vec::new();
        {
            let mut pool = shared.pool();
            let ids: Vec<u64> = pool.open.keys().copied().collect();
            for _ in 0..config.connection_churn_per_s.min(ids.len()) {
                let id = ids[rand::random_range(0..ids.len())];
                if let Some(stop) = pool.remove(id) {
                    stop.cancel();
                }
            }
            let opening: usize = pool.opening.iter().sum();
            let missing = config
                .connections
                .saturating_sub(pool.open.len() + opening)
                .min(OPEN_BURST.max(config.connection_churn_per_s));
            for _ in 0..missing {
                // A few tries to find a user with room for one more; at full load most have.
                let candidate = (0..8)
                    .map(|_| rand::random_range(0..shared.users.len()))
                    .find(|&u| {
                        pool.present[u] && pool.per_user[u] + pool.opening[u] < config.max_per_user
                    });
                if let Some(user) = candidate {
                    pool.opening[user] += 1;
                    pool.next_id += 1;
                    to_open.push((pool.next_id, user));
                }
            }
        }
        for (id, user) in to_open {
            shared
                .connections
                .spawn(connection(shared.clone(), id, user));
        }
    }
}

/// How a connection ended.
enum End {
    Driver,
    Deleted,
    Failed(String),
}

/// One hub connection, from negotiate until the driver or the gateway ends it.
async fn connection(shared: Arc<Shared>, id: u64, user: usize) {
    let token = shared.api.token(&shared.users[user]);
    let result = HubClient::connect(
        shared.api.http(),
        shared.api.base(),
        &token,
        CONNECT_TIMEOUT,
    )
    .await;
    let stop = CancellationToken::new();
    {
        let mut pool = shared.pool();
        pool.opening[user] -= 1;
        if result.is_ok() {
            pool.open.insert(id, (user, stop.clone()));
            pool.per_user[user] += 1;
        }
    }
    let mut client = match result {
        Ok(client) => client,
        Err(err) => {
            shared.stats.error(err.kind());
            return;
        }
    };
    shared.ledger().opened(id, user, Instant::now());
    shared.stats.connection_opened();
    let end = loop {
        let incoming = tokio::select! {
            biased;
            _ = stop.cancelled() => break End::Driver,
            incoming = client.next() => incoming,
        };
        match incoming {
            Ok(Incoming::Invocation { target, arguments }) => {
                let seq = (target == "getRoomMessageNotification")
                    .then(|| arguments.first()?.get("text")?.as_str())
                    .flatten()
                    .and_then(|text| shared.seq(text));
                match seq {
                    Some(seq) => {
                        shared.stats.delivery();
                        shared.ledger().received(id, user, seq);
                    }
                    None => shared.stats.other_event(),
                }
            }
            Ok(Incoming::Completion { .. }) => shared.stats.other_event(),
            Ok(Incoming::Close { error, .. }) => {
                break match error.as_deref() {
                    Some("the user's account was deleted") => End::Deleted,
                    Some(text) => End::Failed(format!("server_close: {text}")),
                    None => End::Failed("server_close".into()),
                }
            }
            Ok(Incoming::Ended) => break End::Failed("socket_ended_without_close".into()),
            Err(err) => break End::Failed(err.kind()),
        }
    };
    shared.ledger().closed(id);
    let expected_deletion = {
        let mut pool = shared.pool();
        pool.remove(id);
        !pool.present[user]
    };
    match end {
        End::Driver => match client.close().await {
            Ok(()) => shared.stats.connection_closed(),
            Err(err) => shared.stats.error(format!("close_{}", err.kind())),
        },
        End::Deleted if expected_deletion => shared.stats.closed_by_deletion(),
        End::Deleted => shared.stats.error("closed_as_deleted_while_present"),
        End::Failed(kind) => shared.stats.error(kind),
    }
}

/// Deletes a churn user and creates them again, one every `user_churn_every`, in turn.
async fn churn_users(shared: Arc<Shared>, load: CancellationToken) {
    let config = &shared.config;
    if config.churn_users == 0 {
        return;
    }
    let mut tick = tokio::time::interval(config.user_churn_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    for turn in 0.. {
        tokio::select! {
            _ = load.cancelled() => return,
            _ = tick.tick() => {}
        }
        let user = config.room_users + turn % config.churn_users;
        churn_one(&shared, user).await;
    }
}

async fn churn_one(shared: &Shared, user: usize) {
    let id = &shared.users[user];
    shared.pool().present[user] = false;
    let room = lock(&shared.churn_rooms).remove(&user);
    // No connection of the old account may still be opening when it goes, or it would
    // belong to neither account; no message to its room may still be on its way, or it
    // would fail for a reason the soak made up.
    let waited = Instant::now();
    while (shared.pool().opening[user] > 0
        || room.is_some_and(|room| shared.ledger().unanswered_in(room) > 0))
        && waited.elapsed() < CONNECT_TIMEOUT
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match shared.api.delete_user(id).await {
        Ok(()) => shared.stats.user_deleted(),
        Err(err) => shared.stats.error(err.kind()),
    }
    let waited = Instant::now();
    while shared.pool().per_user[user] > 0 && waited.elapsed() < DELETION_CLOSES_WITHIN {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let survivors: Vec<CancellationToken> = {
        let mut pool = shared.pool();
        let ids: Vec<u64> = pool
            .open
            .iter()
            .filter(|(_, (u, _))| *u == user)
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter().filter_map(|id| pool.remove(id)).collect()
    };
    for stop in survivors {
        shared.stats.error("connection_outlived_its_deleted_user");
        stop.cancel();
    }
    if let Err(err) = shared.api.put_user(id).await {
        // Stays missing; the next turn tries again.
        shared.stats.error(err.kind());
        return;
    }
    shared.stats.user_recreated();
    shared.pool().present[user] = true;
    if let Err(err) = open_churn_room(shared, user).await {
        shared.stats.error(err.kind());
    }
}

/// Opens a direct room of churn user `user` with a random room user, writes in it, and adds
/// it to the rooms messages go to.
async fn open_churn_room(shared: &Shared, user: usize) -> Result<(), crate::api::ApiError> {
    let partner = rand::random_range(0..shared.config.room_users);
    let room = shared
        .api
        .direct_room(&shared.users[user], &shared.users[partner])
        .await?;
    let room = shared.ledger().add_room(room, vec![user, partner]);
    send_one(shared, room, user).await;
    lock(&shared.churn_rooms).insert(user, room);
    Ok(())
}

/// Sends `messages_per_s` messages a second to random rooms, each from a random member.
async fn send_messages(shared: Arc<Shared>, load: CancellationToken) {
    let every = Duration::from_secs_f64(1.0 / shared.config.messages_per_s.max(0.001));
    let mut tick = tokio::time::interval(every);
    // A fixed rate: a late tick is not made up with a burst, it is just late.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for n in 0u32.. {
        tokio::select! {
            _ = load.cancelled() => return,
            _ = tick.tick() => {}
        }
        let churn_room = (n % CHURN_ROOM_EVERY == 1)
            .then(|| {
                let rooms = lock(&shared.churn_rooms);
                rooms
                    .values()
                    .nth(rand::random_range(0..rooms.len().max(1)))
                    .copied()
            })
            .flatten();
        let room = match churn_room {
            Some(room) => room,
            None if n % GROUP_EVERY == 0 && !shared.groups.is_empty() => {
                shared.groups[rand::random_range(0..shared.groups.len())]
            }
            None => shared.ring[rand::random_range(0..shared.ring.len())],
        };
        let members = shared.ledger().room(room).members.clone();
        let sender = members[rand::random_range(0..members.len())];
        let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
            shared.stats.error("driver_send_backlog");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            send_one(&shared, room, sender).await;
            drop(permit);
        });
    }
}

async fn send_one(shared: &Shared, room: usize, sender: usize) {
    let (seq, room_id) = {
        let mut ledger = shared.ledger();
        let seq = ledger.sending(room, Instant::now());
        (seq, ledger.room(room).id.clone())
    };
    let text = shared.text(seq);
    match shared
        .api
        .send_message(&shared.users[sender], &room_id, &text)
        .await
    {
        Ok(_) => {
            shared.ledger().acknowledged(seq, Instant::now());
            shared.stats.message_sent();
        }
        Err(err) => {
            shared.ledger().failed(seq);
            shared.stats.error(err.kind());
        }
    }
}

/// Reads at `reads_per_s`: history, unread, room list and mark read in turn, by random
/// room users.
async fn read(shared: Arc<Shared>, load: CancellationToken) {
    let every = Duration::from_secs_f64(1.0 / shared.config.reads_per_s.max(0.001));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    for n in 0u32.. {
        tokio::select! {
            _ = load.cancelled() => return,
            _ = tick.tick() => {}
        }
        let room = shared.ring[rand::random_range(0..shared.ring.len())];
        let (room_id, members) = {
            let ledger = shared.ledger();
            let room = ledger.room(room);
            (room.id.clone(), room.members.clone())
        };
        let user = shared.users[members[rand::random_range(0..members.len())]].clone();
        let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
            shared.stats.error("driver_read_backlog");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let api = &shared.api;
            let result = match n % 4 {
                0 => api.history(&user, &room_id, 20).await.map(drop),
                1 => api.unread(&user).await.map(drop),
                2 => api.rooms(&user).await.map(|rooms| {
                    if !matches!(rooms, Value::Array(_)) {
                        shared.stats.error("rooms_not_a_list");
                    }
                }),
                _ => api.mark_read(&user, &room_id).await,
            };
            match result {
                Ok(()) => shared.stats.read(),
                Err(err) => shared.stats.error(err.kind()),
            }
            drop(permit);
        });
    }
}

/// Checks deliveries whose deadline passed, every second.
async fn check_deliveries(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => shared.ledger().check(Instant::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_whole_when_they_can_be() {
        assert_eq!(minutes(Duration::from_secs(0)), "0");
        assert_eq!(minutes(Duration::from_secs(180)), "3");
        assert_eq!(minutes(Duration::from_millis(180_200)), "3");
        assert_eq!(minutes(Duration::from_secs(30)), "0.5");
    }
}
