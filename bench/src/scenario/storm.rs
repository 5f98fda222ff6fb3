//! `join-storm`: every member of a big room joins at once, on a hub with more worker threads
//! than the machine has cores (so that workers are busy while their sessions' events pile up),
//! then chat is published to the room. A healthy client must never be kicked: the run fails
//! when any member was dropped as a slow consumer, lost a message or saw its connection end.
//! Starts its own redis-server and hub (`--hub-bin`).

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::{
    args::Args,
    stack::{HubProcess, RedisServer, Scratch},
    verdict::Verdict,
};

use super::{metric_sum, room};

/// Runs the scenario.
pub async fn run(mut args: Args) -> Result<Value, String> {
    let members: u64 = args.get("members", 5000)?;
    let workers: u64 = args.get("workers", 4)?;
    let rate: u64 = args.get("rate", 200)?;
    let seconds: u64 = args.get("seconds", 5)?;
    let hub_bin: PathBuf = args.get("hub-bin", PathBuf::from("target/release/relay-hub"))?;
    let redis_bin: String = args.get("redis-server", "redis-server".to_string())?;
    args.finish()?;

    let scratch = Scratch::new("join-storm")?;
    let redis = RedisServer::start(&redis_bin, &scratch.dir, false)?;
    let env = [("HUB_WORKERS", workers.to_string())];
    let hub = HubProcess::start(&hub_bin, &redis.url(), &env, &scratch.dir, "hub")?;
    eprintln!(
        "join-storm: {members} members join one room at once on a hub with {workers} workers, \
         then {rate} chat messages/s for {seconds} s"
    );
    let room_args: Vec<String> = [
        "--target",
        &hub.addr.to_string(),
        "--pid",
        &hub.pid().to_string(),
        "--redis",
        &redis.addr().to_string(),
        "--server",
        "hub",
        "--members",
        &members.to_string(),
        "--concurrency",
        &members.to_string(),
        "--messages",
        &(rate * seconds).to_string(),
        "--rate",
        &rate.to_string(),
        "--warmup",
        "0",
        "--max-seconds",
        &(seconds + 10).to_string(),
    ]
    .map(String::from)
    .to_vec();
    let mut report = room::run(Args::parse(&room_args)?).await?;
    let kicks = metric_sum(hub.addr, "hub_slow_consumer_kicks_total").unwrap_or(f64::NAN);

    let field = |k: &str| report.get(k).and_then(Value::as_u64).unwrap_or(u64::MAX);
    let mut verdict = Verdict::default();
    verdict.check(
        "no member kicked",
        kicks == 0.0,
        format!("hub_slow_consumer_kicks_total {kicks}"),
    );
    verdict.check(
        "every member joined",
        field("join_failures") == 0,
        format!("{} of {members} joined", field("joined")),
    );
    verdict.check(
        "no connection ended",
        field("sessions_closed_during_run") == 0,
        format!("{} closed", field("sessions_closed_during_run")),
    );
    verdict.check(
        "every member got every message",
        field("lost") == 0,
        format!("{} of {} deliveries", field("delivered"), field("expected")),
    );
    verdict.print("join-storm");
    let out = report
        .as_object_mut()
        .expect("the room report is an object");
    out.insert("scenario".into(), json!("join-storm"));
    out.insert("workers".into(), json!(workers));
    out.insert("kicks".into(), json!(kicks));
    out.extend(verdict.fields());
    Ok(report)
}
