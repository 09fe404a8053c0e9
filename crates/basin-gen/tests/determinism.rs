//! Same seed → same rows (whatever the batch size); different seed →
//! different rows.

use basin_gen::taxi::{TaxiConfig, Trip};

fn trips(seed: u64) -> Vec<Trip> {
    TaxiConfig::new(20_000, seed).trips().unwrap().collect()
}

#[test]
fn same_seed_same_trips() {
    assert_eq!(trips(7), trips(7));
}

#[test]
fn different_seed_different_trips() {
    let (a, b) = (trips(7), trips(8));
    let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
    assert!(same < 10, "{same} identical rows");
}

#[test]
fn batch_size_does_not_change_the_data() {
    let mut small = TaxiConfig::new(5_000, 3);
    small.batch_size = 333;
    let mut large = small.clone();
    large.batch_size = 4_096;
    let a: Vec<_> = small.batches().unwrap().map(Result::unwrap).collect();
    let b: Vec<_> = large.batches().unwrap().map(Result::unwrap).collect();
    let concat = |v: &[arrow::array::RecordBatch]| {
        arrow::compute::concat_batches(&basin_gen::taxi_schema(), v).unwrap()
    };
    assert_eq!(concat(&a), concat(&b));
    assert_eq!(concat(&a).num_rows(), 5_000);
}
