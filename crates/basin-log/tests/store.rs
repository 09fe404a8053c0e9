//! `LogStore`: creating, listing, growing and deleting topics, rejecting bad
//! names and configs with clear errors, and finding everything (metadata and
//! data) again after a restart.

mod common;

use std::collections::BTreeMap;

use basin_log::{LogError, LogStore, ReadLimit};
use common::*;

fn configs(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn names(store: &LogStore) -> Vec<String> {
    store.topics().iter().map(|t| t.meta.name.clone()).collect()
}

#[test]
fn topics_are_created_listed_grown_and_deleted() {
    let root = tempfile::tempdir().unwrap();
    let store = LogStore::open(root.path(), BTreeMap::new()).unwrap();
    assert!(store.topics().is_empty());

    let orders = store
        .create_topic("orders", 3, configs(&[("segment.bytes", "2048")]), false)
        .unwrap();
    assert_eq!(orders.partitions.len(), 3);
    assert_eq!(orders.meta.partitions, 3);
    assert_eq!(orders.config.segment_bytes, 2048);
    store
        .create_topic("__consumer_offsets", 1, BTreeMap::new(), true)
        .unwrap();
    store
        .create_topic("a.b-c_D9", 1, BTreeMap::new(), false)
        .unwrap();
    assert_eq!(names(&store), ["__consumer_offsets", "a.b-c_D9", "orders"]);
    assert!(store.topic("__consumer_offsets").unwrap().meta.internal);
    assert!(store.topic("nope").is_none());

    assert!(matches!(
        store.create_topic("orders", 1, BTreeMap::new(), false),
        Err(LogError::TopicExists(name)) if name == "orders"
    ));
    assert!(matches!(
        store.create_topic("zero", 0, BTreeMap::new(), false),
        Err(LogError::InvalidConfig { .. })
    ));
    assert!(store.topic("zero").is_none());

    // Partitions are independent logs.
    let p1 = orders.partition(1).unwrap();
    p1.append(&batch(4, 0), 0).unwrap();
    assert_eq!(p1.log_end_offset(), 4);
    assert_eq!(orders.partition(0).unwrap().log_end_offset(), 0);
    assert!(orders.partition(3).is_none());
    assert!(orders.partition(-1).is_none());

    // Growing keeps the existing partitions' data.
    let grown = store.add_partitions("orders", 5).unwrap();
    assert_eq!(grown.partitions.len(), 5);
    assert_eq!(grown.meta.partitions, 5);
    assert_eq!(grown.meta.id, orders.meta.id);
    assert_eq!(grown.partition(1).unwrap().log_end_offset(), 4);
    assert_eq!(grown.partition(4).unwrap().log_end_offset(), 0);
    assert_eq!(grown.partition(4).unwrap().config().segment_bytes, 2048);
    assert!(matches!(
        store.add_partitions("orders", 5),
        Err(LogError::InvalidConfig { .. })
    ));
    assert!(matches!(
        store.add_partitions("missing", 2),
        Err(LogError::UnknownTopic(_))
    ));

    store.delete_topic("a.b-c_D9").unwrap();
    assert_eq!(names(&store), ["__consumer_offsets", "orders"]);
    assert!(!root.path().join("topics").join("a.b-c_D9").exists());
    assert!(matches!(
        store.delete_topic("a.b-c_D9"),
        Err(LogError::UnknownTopic(_))
    ));
    // A deleted name can be used again, starting empty.
    let again = store
        .create_topic("a.b-c_D9", 2, BTreeMap::new(), false)
        .unwrap();
    assert_eq!(again.partition(0).unwrap().log_end_offset(), 0);
}

#[test]
fn invalid_topic_names_are_rejected_with_a_reason() {
    let root = tempfile::tempdir().unwrap();
    let store = LogStore::open(root.path(), BTreeMap::new()).unwrap();
    let long = "x".repeat(250);
    for name in [
        "",
        ".",
        "..",
        "a/b",
        "../escape",
        "with space",
        "tab\tbed",
        "ünïcode",
        "semi;colon",
        long.as_str(),
    ] {
        match store.create_topic(name, 1, BTreeMap::new(), false) {
            Err(e @ LogError::InvalidTopicName { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("invalid topic name"), "{msg}");
                assert!(msg.contains(&format!("{name:?}")), "{msg}");
            }
            other => panic!("{name:?}: expected InvalidTopicName, got {:?}", other.err()),
        }
    }
    assert!(store.topics().is_empty());
    // Nothing escaped the topics directory.
    let entries: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "only topics/ under the root");
    assert_eq!(
        std::fs::read_dir(root.path().join("topics"))
            .unwrap()
            .count(),
        0
    );
    // The longest legal name works.
    store
        .create_topic(&"y".repeat(249), 1, BTreeMap::new(), false)
        .unwrap();
}

#[test]
fn invalid_configs_are_rejected_before_anything_is_created() {
    let root = tempfile::tempdir().unwrap();
    let store = LogStore::open(root.path(), BTreeMap::new()).unwrap();
    match store.create_topic("t", 1, configs(&[("retention.ms", "soon")]), false) {
        Err(e @ LogError::InvalidConfig { .. }) => {
            assert!(e.to_string().contains("retention.ms=soon"), "{e}");
        }
        other => panic!("expected InvalidConfig, got {:?}", other.err()),
    }
    assert!(store.topic("t").is_none());
    assert!(!root.path().join("topics").join("t").exists());
    assert!(LogStore::open(root.path(), configs(&[("segment.bytes", "12")])).is_err());
}

#[test]
fn topics_and_their_data_persist_across_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let defaults = configs(&[("segment.bytes", "1024")]);
    let (id, written) = {
        let store = LogStore::open(root.path(), defaults.clone()).unwrap();
        let t = store
            .create_topic("events", 2, configs(&[("retention.ms", "-1")]), false)
            .unwrap();
        store
            .create_topic("gone", 1, BTreeMap::new(), false)
            .unwrap();
        store
            .create_topic("crashy", 1, BTreeMap::new(), false)
            .unwrap();
        fill(&t.partitions[0], 10, 5, 0);
        fill(&t.partitions[1], 3, 5, 0);
        store.add_partitions("events", 3).unwrap();
        store.delete_topic("gone").unwrap();
        fill(&store.topic("crashy").unwrap().partitions[0], 4, 2, 0);
        let written = read_all(&t.partitions[0], 0);
        store.close();
        (t.meta.id, written)
    };
    let store = LogStore::open(root.path(), defaults.clone()).unwrap();
    assert_eq!(names(&store), ["crashy", "events"]);
    let t = store.topic("events").unwrap();
    assert_eq!(t.meta.id, id);
    assert_eq!(t.meta.partitions, 3);
    assert_eq!(t.partitions.len(), 3);
    assert_eq!(t.config.segment_bytes, 1024);
    assert_eq!(t.config.retention_ms, -1);
    assert_eq!(t.meta.configs, configs(&[("retention.ms", "-1")]));
    assert_eq!(read_all(&t.partitions[0], 0), written);
    assert_eq!(t.partitions[1].log_end_offset(), 15);
    assert_eq!(t.partitions[2].log_end_offset(), 0);
    let res = t.partitions[0].read(7, 1, ReadLimit::LogEnd).unwrap();
    assert_eq!(whole_batches(&res.records)[0].base_offset, 5);
    assert_eq!(
        store.topic("crashy").unwrap().partitions[0].log_end_offset(),
        8
    );

    // alter_configs persists too, and applies to open partitions.
    store
        .alter_configs("events", configs(&[("retention.bytes", "4096")]))
        .unwrap();
    assert_eq!(t.partitions[0].config().retention_bytes, 4096);
    drop(t);
    drop(store); // a crash: no close
    let store = LogStore::open(root.path(), defaults).unwrap();
    let t = store.topic("events").unwrap();
    assert_eq!(t.config.retention_bytes, 4096);
    assert_eq!(t.config.retention_ms, 7 * 24 * 3600 * 1000);
    assert_eq!(read_all(&t.partitions[0], 0), written);
}

#[test]
fn a_delete_interrupted_by_a_crash_does_not_bring_the_topic_back() {
    let root = tempfile::tempdir().unwrap();
    let topics = root.path().join("topics");
    {
        let store = LogStore::open(root.path(), BTreeMap::new()).unwrap();
        let t = store
            .create_topic("doomed", 1, BTreeMap::new(), false)
            .unwrap();
        fill(&t.partitions[0], 2, 5, 0);
        // A legal topic name that looks like a renamed-aside directory.
        let odd = store
            .create_topic(".odd.deleted", 1, BTreeMap::new(), false)
            .unwrap();
        fill(&odd.partitions[0], 1, 5, 0);
        store.close();
    }
    // delete_topic renames the directory aside, then removes it; simulate a
    // crash between the two.
    std::fs::rename(
        topics.join("doomed"),
        topics.join(".doomed.0b7c2f7e-0000-4000-8000-000000000000.deleted"),
    )
    .unwrap();
    let store = LogStore::open(root.path(), BTreeMap::new()).unwrap();
    assert!(
        store.topic("doomed").is_none(),
        "a deleted topic came back: {:?}",
        names(&store)
    );
    assert!(!topics.join("doomed").exists());
    assert_eq!(names(&store), [".odd.deleted"]);
    let odd = store.topic(".odd.deleted").unwrap();
    assert_eq!(odd.partitions[0].log_end_offset(), 5);
    drop(store);
    let leftovers: Vec<_> = std::fs::read_dir(&topics)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, [".odd.deleted"], "trash left behind");
}
