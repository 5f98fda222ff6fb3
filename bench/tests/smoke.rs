//! Smoke test: `hub-bench` runs tiny bounded scenarios against a real hub (started in this
//! process through `relay_hub::run`, on real sockets) and a private redis-server, and its JSON
//! line accounts for every message. Speed is not asserted here; the benchmark reports it.

mod common;

use common::{bench, hub, redis};

#[test]
fn notify_room_and_chat_account_for_every_message() {
    let redis = redis();
    let (hub, _stop) = hub(&redis);
    let (hub, redis_addr) = (hub.to_string(), redis.addr.to_string());
    let common = ["--target", hub.as_str(), "--redis", redis_addr.as_str()];

    let notify = bench(
        &[
            &["notify"][..],
            &common,
            &[
                "--users",
                "20",
                "--rate",
                "500",
                "--seconds",
                "1",
                "--warmup",
                "0",
            ],
        ]
        .concat(),
    );
    assert_eq!(notify["connected"], 20, "{notify}");
    assert!(notify["published"].as_u64().unwrap() >= 400, "{notify}");
    assert_eq!(notify["delivered"], notify["published"], "{notify}");
    assert_eq!(notify["lost"], 0, "{notify}");
    assert_eq!(
        notify["latency_us"]["count"], notify["delivered"],
        "{notify}"
    );

    let room = bench(
        &[
            &["room"][..],
            &common,
            &[
                "--members",
                "10",
                "--messages",
                "20",
                "--rate",
                "100",
                "--warmup",
                "0",
            ],
        ]
        .concat(),
    );
    assert_eq!(room["joined"], 10, "{room}");
    assert_eq!(room["published"], 20, "{room}");
    assert_eq!(room["delivered"], 200, "{room}");
    assert_eq!(room["messages_incomplete"], 0, "{room}");

    let chat = bench(&[
        "chat",
        "--target",
        hub.as_str(),
        "--clients",
        "10",
        "--rooms",
        "2",
        "--rate-per-client",
        "2",
        "--seconds",
        "1",
    ]);
    let sent = chat["sent"].as_u64().unwrap();
    assert!(sent >= 10, "{chat}");
    // every message reaches the five members of its room, the sender included
    assert_eq!(chat["expected"].as_u64().unwrap(), sent * 5, "{chat}");
    assert_eq!(chat["delivered"], chat["expected"], "{chat}");
    assert_eq!(
        chat["round_trip_us"]["count"].as_u64().unwrap(),
        sent,
        "{chat}"
    );
}
