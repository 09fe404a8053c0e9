//! The 265 TLC taxi zones (LocationID 1..=265) and where trips start and
//! end: a skewed, Zipf-like pickup table dominated by Manhattan and the two
//! NYC airports, and drop-off tables that depend on the pickup's area.

use rand::Rng;

use crate::sample::Categorical;

/// Newark Liberty International Airport (EWR), in New Jersey.
pub const EWR: i32 = 1;
/// JFK International Airport.
pub const JFK: i32 = 132;
/// LaGuardia Airport.
pub const LGA: i32 = 138;
/// "Unknown" (NV): the meter had no location.
pub const UNKNOWN: i32 = 264;
/// "Outside of NYC" (NA): e.g. Nassau or Westchester drop-offs.
pub const OUTSIDE_NYC: i32 = 265;
/// The highest LocationID.
pub const ZONE_COUNT: i32 = 265;

/// Manhattan LocationIDs ranked by how many yellow-taxi pickups they see
/// (roughly the 2023 order: Upper East Side South first, Governors Island last).
pub const MANHATTAN_BY_POPULARITY: [i32; 67] = [
    237, 161, 236, 162, 230, 186, 142, 170, 163, 239, 68, 141, 48, 234, 79, 238, 107, 140, 164,
    100, 263, 229, 249, 90, 246, 43, 137, 113, 143, 233, 262, 231, 158, 114, 148, 50, 125, 151,
    211, 87, 24, 166, 75, 144, 261, 13, 209, 45, 41, 4, 74, 88, 232, 224, 42, 12, 152, 116, 244,
    243, 127, 120, 202, 128, 194, 153, 103,
];

/// Manhattan zones north of 96th Street (Harlem, Washington Heights,
/// Inwood, ...): outside the congestion-surcharge area.
pub const MANHATTAN_NORTH_OF_96TH: [i32; 16] = [
    24, 41, 42, 74, 75, 116, 120, 127, 128, 151, 152, 153, 166, 194, 243, 244,
];

/// Busy outer-borough neighbourhoods (Astoria, Long Island City,
/// Williamsburg, Park Slope, Downtown Brooklyn, the South Bronx, ...).
pub const OUTER_HUBS: [i32; 31] = [
    7, 25, 33, 40, 49, 61, 65, 66, 69, 70, 80, 82, 83, 95, 97, 112, 129, 145, 146, 159, 168, 179,
    181, 189, 193, 223, 226, 247, 255, 256, 260,
];

/// Share of pickups in Manhattan (real data: 85-90%).
pub const PICKUP_SHARE_MANHATTAN: f64 = 0.855;
/// Share of pickups at JFK (real data: about 5%).
pub const PICKUP_SHARE_JFK: f64 = 0.052;
/// Share of pickups at LaGuardia (real data: about 3%).
pub const PICKUP_SHARE_LGA: f64 = 0.033;
/// Share of pickups at Newark (yellow cabs rarely pick up in New Jersey).
pub const PICKUP_SHARE_EWR: f64 = 0.0002;
/// Share of pickups with an unknown zone (264).
pub const PICKUP_SHARE_UNKNOWN: f64 = 0.009;
/// An outer-borough hub is this many times as busy as another outer zone.
pub const OUTER_HUB_FACTOR: f64 = 8.0;

/// Zipf-like weight of the zone at popularity `rank` (0 = busiest): a
/// power law `1 / sqrt(r + 40)` with an exponential cut-off `exp(-r / 20)`
/// (`r = rank + 1`), so the top zone sees about 5% of all pickups, the 10th
/// about 3%, the 30th about 1% and the last ones almost none.
pub fn zipf_weight(rank: usize) -> f64 {
    let r = rank as f64 + 1.0;
    (-r / 20.0).exp() / (r + 40.0).sqrt()
}

/// Where a zone lies, as far as fares and distances care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Manhattan, south of 96th Street (congestion-surcharge area).
    ManhattanCore,
    /// Manhattan north of 96th Street.
    ManhattanNorth,
    /// JFK or LaGuardia.
    Airport,
    /// Newark airport.
    Newark,
    /// Brooklyn, Queens, the Bronx, Staten Island, unknown or outside NYC.
    Outer,
}

impl Area {
    /// Whether this is any part of Manhattan.
    pub fn is_manhattan(self) -> bool {
        matches!(self, Area::ManhattanCore | Area::ManhattanNorth)
    }
}

/// The area of every LocationID, indexed by id (0 unused).
const AREAS: [Area; ZONE_COUNT as usize + 1] = build_areas();

const fn build_areas() -> [Area; ZONE_COUNT as usize + 1] {
    let mut areas = [Area::Outer; ZONE_COUNT as usize + 1];
    let mut i = 0;
    while i < MANHATTAN_BY_POPULARITY.len() {
        areas[MANHATTAN_BY_POPULARITY[i] as usize] = Area::ManhattanCore;
        i += 1;
    }
    i = 0;
    while i < MANHATTAN_NORTH_OF_96TH.len() {
        areas[MANHATTAN_NORTH_OF_96TH[i] as usize] = Area::ManhattanNorth;
        i += 1;
    }
    areas[JFK as usize] = Area::Airport;
    areas[LGA as usize] = Area::Airport;
    areas[EWR as usize] = Area::Newark;
    areas
}

/// The area of a LocationID (ids outside 1..=265 count as outer).
pub fn area(zone: i32) -> Area {
    usize::try_from(zone)
        .ok()
        .and_then(|i| AREAS.get(i).copied())
        .unwrap_or(Area::Outer)
}

/// Whether a zone is in Manhattan.
pub fn is_manhattan(zone: i32) -> bool {
    area(zone).is_manhattan()
}

/// Whether a zone is in the congestion-surcharge area (Manhattan south of 96th St).
pub fn in_congestion_zone(zone: i32) -> bool {
    area(zone) == Area::ManhattanCore
}

/// Outer-borough zones: neither Manhattan, nor an airport, nor 264/265.
fn outer_zones() -> impl Iterator<Item = i32> {
    (2..UNKNOWN).filter(|&z| area(z) == Area::Outer)
}

/// Weight of an outer zone relative to the other outer zones.
fn outer_weight(zone: i32) -> f64 {
    if OUTER_HUBS.contains(&zone) {
        OUTER_HUB_FACTOR
    } else {
        1.0
    }
}

/// Manhattan zones with Zipf-like weights summing to `share`.
fn manhattan_weights(share: f64) -> Vec<(i32, f64)> {
    let total: f64 = (0..MANHATTAN_BY_POPULARITY.len()).map(zipf_weight).sum();
    MANHATTAN_BY_POPULARITY
        .iter()
        .enumerate()
        .map(|(rank, &z)| (z, share * zipf_weight(rank) / total))
        .collect()
}

/// Outer zones with hub-weighted shares summing to `share`.
fn outer_weights(share: f64) -> Vec<(i32, f64)> {
    let total: f64 = outer_zones().map(outer_weight).sum();
    outer_zones()
        .map(|z| (z, share * outer_weight(z) / total))
        .collect()
}

/// The pickup-zone distribution.
pub fn pickup_table() -> Categorical<i32> {
    let fixed = PICKUP_SHARE_MANHATTAN
        + PICKUP_SHARE_JFK
        + PICKUP_SHARE_LGA
        + PICKUP_SHARE_EWR
        + PICKUP_SHARE_UNKNOWN;
    let mut pairs = manhattan_weights(PICKUP_SHARE_MANHATTAN);
    pairs.extend(outer_weights(1.0 - fixed));
    pairs.extend([
        (JFK, PICKUP_SHARE_JFK),
        (LGA, PICKUP_SHARE_LGA),
        (EWR, PICKUP_SHARE_EWR),
        (UNKNOWN, PICKUP_SHARE_UNKNOWN),
    ]);
    Categorical::new(pairs)
}

/// Drop-off shares for one kind of pickup area. `same_zone` is the chance
/// of ending in the pickup zone; the other fields are the shares of the
/// remaining draws (Manhattan and outer zones spread as for pickups).
#[derive(Debug, Clone, Copy)]
pub struct DropoffMix {
    pub same_zone: f64,
    pub manhattan: f64,
    pub outer: f64,
    pub jfk: f64,
    pub lga: f64,
    pub ewr: f64,
    pub unknown: f64,
    pub outside_nyc: f64,
}

/// From Manhattan: mostly within Manhattan, a few airport runs.
pub const FROM_MANHATTAN: DropoffMix = DropoffMix {
    same_zone: 0.06,
    manhattan: 0.872,
    outer: 0.072,
    jfk: 0.014,
    lga: 0.022,
    ewr: 0.011,
    unknown: 0.007,
    outside_nyc: 0.002,
};

/// From JFK or LaGuardia: into Manhattan (about half) or Queens/Brooklyn.
pub const FROM_AIRPORT: DropoffMix = DropoffMix {
    same_zone: 0.0,
    manhattan: 0.55,
    outer: 0.40,
    jfk: 0.01,
    lga: 0.01,
    ewr: 0.002,
    unknown: 0.02,
    outside_nyc: 0.008,
};

/// From the outer boroughs (and unknown / Newark pickups).
pub const FROM_OUTER: DropoffMix = DropoffMix {
    same_zone: 0.15,
    manhattan: 0.30,
    outer: 0.55,
    jfk: 0.04,
    lga: 0.05,
    ewr: 0.003,
    unknown: 0.02,
    outside_nyc: 0.01,
};

/// Drop-off tables by pickup area.
#[derive(Debug, Clone)]
pub struct DropoffTables {
    from_manhattan: (f64, Categorical<i32>),
    from_airport: (f64, Categorical<i32>),
    from_outer: (f64, Categorical<i32>),
}

impl DropoffTables {
    /// Build the three tables.
    pub fn new() -> DropoffTables {
        DropoffTables {
            from_manhattan: (FROM_MANHATTAN.same_zone, dropoff_table(&FROM_MANHATTAN)),
            from_airport: (FROM_AIRPORT.same_zone, dropoff_table(&FROM_AIRPORT)),
            from_outer: (FROM_OUTER.same_zone, dropoff_table(&FROM_OUTER)),
        }
    }

    /// Draw a drop-off zone for a pickup in `pickup`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R, pickup: i32) -> i32 {
        let (same, table) = match area(pickup) {
            Area::ManhattanCore | Area::ManhattanNorth => &self.from_manhattan,
            Area::Airport => &self.from_airport,
            Area::Newark | Area::Outer => &self.from_outer,
        };
        if crate::sample::chance(rng, *same) {
            return pickup;
        }
        loop {
            let zone = table.sample(rng);
            if zone != pickup || area(zone) != Area::Airport {
                return zone;
            }
        }
    }
}

impl Default for DropoffTables {
    fn default() -> DropoffTables {
        DropoffTables::new()
    }
}

/// One drop-off distribution from a mix.
fn dropoff_table(mix: &DropoffMix) -> Categorical<i32> {
    let mut pairs = manhattan_weights(mix.manhattan);
    pairs.extend(outer_weights(mix.outer));
    pairs.extend([
        (JFK, mix.jfk),
        (LGA, mix.lga),
        (EWR, mix.ewr),
        (UNKNOWN, mix.unknown),
        (OUTSIDE_NYC, mix.outside_nyc),
    ]);
    Categorical::new(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The real Manhattan LocationIDs.
    const MANHATTAN: [i32; 67] = [
        4, 12, 13, 24, 41, 42, 43, 45, 48, 50, 68, 74, 75, 79, 87, 88, 90, 100, 103, 107, 113, 114,
        116, 120, 125, 127, 128, 137, 140, 141, 142, 143, 144, 148, 151, 152, 153, 158, 161, 162,
        163, 164, 166, 170, 186, 194, 202, 209, 211, 224, 229, 230, 231, 232, 233, 234, 236, 237,
        238, 239, 243, 244, 246, 249, 261, 262, 263,
    ];

    #[test]
    fn ranked_list_is_exactly_manhattan() {
        let mut ranked = MANHATTAN_BY_POPULARITY.to_vec();
        ranked.sort_unstable();
        assert_eq!(ranked, MANHATTAN);
        assert!(MANHATTAN_NORTH_OF_96TH
            .iter()
            .all(|z| MANHATTAN.contains(z)));
        assert!(OUTER_HUBS.iter().all(|&z| area(z) == Area::Outer));
    }

    #[test]
    fn pickup_shares() {
        let table = pickup_table();
        let manhattan: f64 = MANHATTAN.iter().map(|&z| table.share(z)).sum();
        assert!((manhattan - PICKUP_SHARE_MANHATTAN).abs() < 1e-9);
        let top = table.share(MANHATTAN_BY_POPULARITY[0]);
        assert!((0.035..0.07).contains(&top), "top zone share {top}");
        let all: f64 = (1..=ZONE_COUNT).map(|z| table.share(z)).sum();
        assert!((all - 1.0).abs() < 1e-9);
    }

    #[test]
    fn areas() {
        assert_eq!(area(JFK), Area::Airport);
        assert_eq!(area(EWR), Area::Newark);
        assert!(in_congestion_zone(161));
        assert!(!in_congestion_zone(127));
        assert!(is_manhattan(127));
        assert!(!is_manhattan(7));
    }
}
