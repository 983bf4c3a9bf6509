//! Adversarial meter series with their rollups worked out by hand (each expected number is a
//! literal, with the arithmetic in a comment), run through `tds_domain::rollup::rollup`.
//!
//! Every case is also checked with its readings in reverse arrival order (when no two share an
//! instant) and split at every bucket edge with the right baseline, which must change nothing.

use crate::{close, close_opt, utc};
use tds_domain::consumption::{Meter, window};
use tds_domain::rollup::{Rollup, rollup};
use tds_domain::{Bucket, MeasurementKind, TimeZone};

use Bucket::{Day, Hour, Month};
use MeasurementKind::{Counter, Gauge, Interval};

struct Case {
    name: &'static str,
    zone: &'static str,
    kind: MeasurementKind,
    scale: f64,
    rollover: Option<f64>,
    baseline: Option<(&'static str, f64)>,
    /// In arrival order.
    readings: &'static [(&'static str, f64)],
    bucket: Bucket,
    expected: &'static [Expected],
}

#[derive(Debug)]
struct Expected {
    /// The bucket's local start, with its UTC offset.
    start: &'static str,
    consumption: Option<f64>,
    min: Option<f64>,
    avg: Option<f64>,
    max: Option<f64>,
    count: u32,
    resets: u32,
    rollovers: u32,
    negatives: u32,
}

/// A bucket with `count` readings and nothing else: no consumption (a gauge's), no min/max.
const fn bucket(start: &'static str, count: u32) -> Expected {
    Expected {
        start,
        consumption: None,
        min: None,
        avg: None,
        max: None,
        count,
        resets: 0,
        rollovers: 0,
        negatives: 0,
    }
}

impl Expected {
    const fn used(self, consumption: f64) -> Self {
        Self { consumption: Some(consumption), ..self }
    }
    const fn range(self, min: f64, max: f64) -> Self {
        Self { min: Some(min), max: Some(max), ..self }
    }
    const fn avg(self, avg: f64) -> Self {
        Self { avg: Some(avg), ..self }
    }
    const fn resets(self, resets: u32) -> Self {
        Self { resets, ..self }
    }
    const fn rollovers(self, rollovers: u32) -> Self {
        Self { rollovers, ..self }
    }
    const fn negatives(self, negatives: u32) -> Self {
        Self { negatives, ..self }
    }
}

const SP: &str = "America/Sao_Paulo";
const NY: &str = "America/New_York";

// Readings shared by several cases (different bucket sizes or zones).

const RESET_SERIES: &[(&str, f64)] = &[
    ("2026-03-10T10:00:00-03:00", 100.0),
    ("2026-03-10T10:30:00-03:00", 104.5),
    ("2026-03-10T11:00:00-03:00", 110.0),
    ("2026-03-10T11:15:00-03:00", 3.0),
    ("2026-03-10T11:45:00-03:00", 7.0),
    ("2026-03-10T12:00:00-03:00", 12.0),
];

const LATE_BATCH: &[(&str, f64)] = &[
    ("2026-08-20T08:00:00-03:00", 1000.0),
    ("2026-08-20T09:00:00-03:00", 1010.0),
    ("2026-08-20T14:00:00-03:00", 1060.0),
    ("2026-08-20T15:00:00-03:00", 1070.0),
    // Buffered by the gateway through the outage, published after it, not in order.
    ("2026-08-20T10:00:00-03:00", 1020.0),
    ("2026-08-20T11:00:00-03:00", 1030.0),
    ("2026-08-20T13:00:00-03:00", 1050.0),
    ("2026-08-20T12:00:00-03:00", 1040.0),
];

// America/Sao_Paulo, 2018-11-04: 00:00 -03 became 01:00 -02 (UTC 03:00).
const SP_SPRING: &[(&str, f64)] = &[
    ("2018-11-04T02:30:00Z", 500.0), // 23:30 -03 on the 3rd
    ("2018-11-04T03:00:00Z", 502.0), // 01:00 -02 on the 4th, its first instant
    ("2018-11-04T12:00:00Z", 520.0),
    ("2018-11-05T01:30:00Z", 530.0), // 23:30 -02 on the 4th
    ("2018-11-05T02:00:00Z", 531.0), // 00:00 -02 on the 5th
    ("2018-11-05T02:30:00Z", 533.0),
];

// America/Sao_Paulo, 2019-02-17: 00:00 -02 became 23:00 -03 on the 16th (UTC 02:00).
const SP_FALL_GAUGE: &[(&str, f64)] = &[
    ("2019-02-16T02:00:00Z", 36.0), // 00:00 -02 on the 16th; scaled 18
    ("2019-02-17T01:30:00Z", 40.0), // 23:30 -02 on the 16th; 20
    ("2019-02-17T02:30:00Z", 44.0), // 23:30 -03 on the 16th, the second one; 22
    ("2019-02-17T03:30:00Z", 50.0), // 00:30 -03 on the 17th; 25
];

// America/New_York, 2026-03-08: 02:00 EST became 03:00 EDT (UTC 07:00).
const NY_SPRING_INTERVAL: &[(&str, f64)] = &[
    ("2026-03-08T04:30:00Z", 1.5),   // 23:30 EST on the 7th
    ("2026-03-08T06:30:00Z", 2.0),   // 01:30 EST
    ("2026-03-08T07:00:00Z", 0.5),   // 03:00 EDT
    ("2026-03-08T07:30:00Z", -0.25), // 03:30 EDT, negative: counts 0
    ("2026-03-09T03:30:00Z", 4.0),   // 23:30 EDT on the 8th
    ("2026-03-09T04:00:00Z", 1.0),   // 00:00 EDT on the 9th
];

// America/New_York, 2026-11-01: 02:00 EDT became 01:00 EST (UTC 06:00).
const NY_FALL_COUNTER: &[(&str, f64)] = &[
    ("2026-11-01T04:00:00Z", 1000.0), // 00:00 EDT
    ("2026-11-01T05:00:00Z", 1003.0), // 01:00 EDT
    ("2026-11-01T05:30:00Z", 1004.0), // 01:30 EDT
    ("2026-11-01T06:00:00Z", 1010.0), // 01:00 EST, the second one
    ("2026-11-01T06:45:00Z", 1011.0), // 01:45 EST
    ("2026-11-01T07:00:00Z", 1020.0), // 02:00 EST
];
const NY_FALL_BASELINE: Option<(&str, f64)> = Some(("2026-10-31T23:00:00Z", 998.0));

const MONTH_END: &[(&str, f64)] = &[
    ("2026-01-15T12:00:00-03:00", 200.0),
    ("2026-01-31T23:30:00-03:00", 250.0), // 2026-02-01T02:30Z
    ("2026-02-01T00:30:00-03:00", 251.5), // 2026-02-01T03:30Z: same UTC day
    ("2026-02-28T23:59:00-03:00", 300.0), // 2026-03-01T02:59Z
    ("2026-03-01T00:00:00-03:00", 300.25),
];

const CASES: &[Case] = &[
    Case {
        name: "counter reset starts a new baseline (hours)",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: None,
        readings: RESET_SERIES,
        bucket: Hour,
        expected: &[
            // First reading has no predecessor; 104.5 - 100
            bucket("2026-03-10T10:00:00-03:00", 2).used(4.5).range(100.0, 104.5),
            // (110 - 104.5) + reset 0 + (7 - 3)
            bucket("2026-03-10T11:00:00-03:00", 3).used(9.5).range(3.0, 110.0).resets(1),
            // 12 - 7
            bucket("2026-03-10T12:00:00-03:00", 1).used(5.0).range(12.0, 12.0),
        ],
    },
    Case {
        name: "counter reset starts a new baseline (day)",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: None,
        readings: RESET_SERIES,
        bucket: Day,
        expected: &[
            // 4.5 + 9.5 + 5
            bucket("2026-03-10T00:00:00-03:00", 6).used(19.0).range(3.0, 110.0).resets(1),
        ],
    },
    Case {
        name: "rollover at the configured register wrap, scaled litres to m³",
        zone: SP,
        kind: Counter,
        scale: 0.001,
        rollover: Some(100_000.0),
        baseline: None,
        readings: &[
            ("2026-05-01T00:10:00-03:00", 99_990.0),
            ("2026-05-01T00:40:00-03:00", 99_999.0),
            ("2026-05-01T01:10:00-03:00", 12.0),
            ("2026-05-01T01:40:00-03:00", 50.0),
        ],
        bucket: Hour,
        expected: &[
            // (99999 - 99990) * 0.001
            bucket("2026-05-01T00:00:00-03:00", 2).used(0.009).range(99.99, 99.999),
            // ((100000 - 99999) + 12) * 0.001 + (50 - 12) * 0.001 = 0.013 + 0.038
            bucket("2026-05-01T01:00:00-03:00", 2).used(0.051).range(0.012, 0.05).rollovers(1),
        ],
    },
    Case {
        name: "meter replaced mid-register with a rollover configured is a reset, not a wrap",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: Some(100_000.0),
        baseline: Some(("2026-05-01T23:00:00-03:00", 39_990.0)),
        readings: &[
            ("2026-05-02T10:00:00-03:00", 40_000.0),
            ("2026-05-02T11:00:00-03:00", 40_100.0),
            // New meter. A wrap would be (100000 - 40100) + 15 = 59915, over half the register.
            ("2026-05-02T12:00:00-03:00", 15.0),
            ("2026-05-02T13:00:00-03:00", 40.0),
        ],
        bucket: Day,
        expected: &[
            // (40000 - 39990) + (40100 - 40000) + 0 + (40 - 15) = 10 + 100 + 25
            bucket("2026-05-02T00:00:00-03:00", 4).used(135.0).range(15.0, 40_100.0).resets(1),
        ],
    },
    Case {
        name: "meter replaced without a rollover configured",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: None,
        readings: &[
            ("2026-06-01T10:00:00-03:00", 8500.5),
            ("2026-06-01T14:00:00-03:00", 8502.0),
            ("2026-06-01T18:00:00-03:00", 7.0),
            ("2026-06-01T22:00:00-03:00", 9.25),
            ("2026-06-02T06:00:00-03:00", 10.0),
        ],
        bucket: Day,
        expected: &[
            // (8502 - 8500.5) + 0 + (9.25 - 7)
            bucket("2026-06-01T00:00:00-03:00", 4).used(3.75).range(7.0, 8502.0).resets(1),
            // 10 - 9.25
            bucket("2026-06-02T00:00:00-03:00", 1).used(0.75).range(10.0, 10.0),
        ],
    },
    Case {
        name: "decrease from above the register range is a reset",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: Some(10_000.0),
        baseline: None,
        readings: &[
            ("2026-07-01T09:00:00-03:00", 11_990.0),
            ("2026-07-01T10:00:00-03:00", 12_000.0),
            ("2026-07-01T11:00:00-03:00", 5.0),
            ("2026-07-01T12:00:00-03:00", 8.0),
        ],
        bucket: Day,
        expected: &[
            // 10 + 0 + 3
            bucket("2026-07-01T00:00:00-03:00", 4).used(13.0).range(5.0, 12_000.0).resets(1),
        ],
    },
    Case {
        name: "duplicates: the first reading given for an instant wins",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: None,
        readings: &[
            ("2026-03-10T10:00:00-03:00", 10.0),
            ("2026-03-10T10:30:00-03:00", 12.0),
            ("2026-03-10T10:00:00-03:00", 10.0), // same instant, same value
            ("2026-03-10T11:00:00-03:00", 15.0),
            ("2026-03-10T10:30:00-03:00", 99.0), // same instant, other value: dropped
        ],
        bucket: Hour,
        expected: &[
            // 12 - 10
            bucket("2026-03-10T10:00:00-03:00", 2).used(2.0).range(10.0, 12.0),
            // 15 - 12 (with 99 kept this would have been a reset)
            bucket("2026-03-10T11:00:00-03:00", 1).used(3.0).range(15.0, 15.0),
        ],
    },
    Case {
        name: "duplicates: a wrong first value wins too, and is a reset",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: None,
        readings: &[
            ("2026-03-10T10:00:00-03:00", 10.0),
            ("2026-03-10T11:00:00-03:00", 9.0),
            ("2026-03-10T11:00:00-03:00", 15.0),
            ("2026-03-10T12:00:00-03:00", 16.0),
        ],
        bucket: Hour,
        expected: &[
            bucket("2026-03-10T10:00:00-03:00", 1).used(0.0).range(10.0, 10.0),
            bucket("2026-03-10T11:00:00-03:00", 1).used(0.0).range(9.0, 9.0).resets(1),
            // 16 - 9
            bucket("2026-03-10T12:00:00-03:00", 1).used(7.0).range(16.0, 16.0),
        ],
    },
    Case {
        name: "before the late batch: the reading after the gap closes the whole gap",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: None,
        readings: &[
            ("2026-08-20T08:00:00-03:00", 1000.0),
            ("2026-08-20T09:00:00-03:00", 1010.0),
            ("2026-08-20T14:00:00-03:00", 1060.0),
            ("2026-08-20T15:00:00-03:00", 1070.0),
        ],
        bucket: Hour,
        expected: &[
            bucket("2026-08-20T08:00:00-03:00", 1).used(0.0).range(1000.0, 1000.0),
            bucket("2026-08-20T09:00:00-03:00", 1).used(10.0).range(1010.0, 1010.0),
            // 1060 - 1010
            bucket("2026-08-20T14:00:00-03:00", 1).used(50.0).range(1060.0, 1060.0),
            bucket("2026-08-20T15:00:00-03:00", 1).used(10.0).range(1070.0, 1070.0),
        ],
    },
    Case {
        name: "after the late batch, arriving out of order: ten an hour",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: None,
        readings: LATE_BATCH,
        bucket: Hour,
        expected: &[
            bucket("2026-08-20T08:00:00-03:00", 1).used(0.0).range(1000.0, 1000.0),
            bucket("2026-08-20T09:00:00-03:00", 1).used(10.0).range(1010.0, 1010.0),
            bucket("2026-08-20T10:00:00-03:00", 1).used(10.0).range(1020.0, 1020.0),
            bucket("2026-08-20T11:00:00-03:00", 1).used(10.0).range(1030.0, 1030.0),
            bucket("2026-08-20T12:00:00-03:00", 1).used(10.0).range(1040.0, 1040.0),
            bucket("2026-08-20T13:00:00-03:00", 1).used(10.0).range(1050.0, 1050.0),
            bucket("2026-08-20T14:00:00-03:00", 1).used(10.0).range(1060.0, 1060.0),
            bucket("2026-08-20T15:00:00-03:00", 1).used(10.0).range(1070.0, 1070.0),
        ],
    },
    Case {
        name: "Sao Paulo 2018-11-04, the 23-hour day (days)",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: Some(("2018-11-04T02:00:00Z", 499.0)),
        readings: SP_SPRING,
        bucket: Day,
        expected: &[
            // 500 - 499
            bucket("2018-11-03T00:00:00-03:00", 1).used(1.0).range(500.0, 500.0),
            // (502 - 500) + (520 - 502) + (530 - 520)
            bucket("2018-11-04T01:00:00-02:00", 3).used(30.0).range(502.0, 530.0),
            // (531 - 530) + (533 - 531)
            bucket("2018-11-05T00:00:00-02:00", 2).used(3.0).range(531.0, 533.0),
        ],
    },
    Case {
        name: "Sao Paulo 2018-11-04, the 23-hour day (hours)",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: Some(("2018-11-04T02:00:00Z", 499.0)),
        readings: SP_SPRING,
        bucket: Hour,
        expected: &[
            bucket("2018-11-03T23:00:00-03:00", 1).used(1.0).range(500.0, 500.0),
            // The next clock hour after 23:00 -03 is 01:00 -02.
            bucket("2018-11-04T01:00:00-02:00", 1).used(2.0).range(502.0, 502.0),
            bucket("2018-11-04T10:00:00-02:00", 1).used(18.0).range(520.0, 520.0),
            bucket("2018-11-04T23:00:00-02:00", 1).used(10.0).range(530.0, 530.0),
            bucket("2018-11-05T00:00:00-02:00", 2).used(3.0).range(531.0, 533.0),
        ],
    },
    Case {
        name: "Sao Paulo 2018-11-04, the 23-hour day (month)",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: Some(("2018-11-04T02:00:00Z", 499.0)),
        readings: SP_SPRING,
        bucket: Month,
        expected: &[
            // 533 - 499
            bucket("2018-11-01T00:00:00-03:00", 6).used(34.0).range(500.0, 533.0),
        ],
    },
    Case {
        name: "Sao Paulo 2019-02-16, the 25-hour day, gauge (days)",
        zone: SP,
        kind: Gauge,
        scale: 0.5,
        rollover: None,
        baseline: None,
        readings: SP_FALL_GAUGE,
        bucket: Day,
        expected: &[
            // (18 + 20 + 22) / 3
            bucket("2019-02-16T00:00:00-02:00", 3).range(18.0, 22.0).avg(20.0),
            bucket("2019-02-17T00:00:00-03:00", 1).range(25.0, 25.0).avg(25.0),
        ],
    },
    Case {
        name: "Sao Paulo 2019-02-16, the 25-hour day, gauge (hours: 23:00 twice)",
        zone: SP,
        kind: Gauge,
        scale: 0.5,
        rollover: None,
        baseline: None,
        readings: SP_FALL_GAUGE,
        bucket: Hour,
        expected: &[
            bucket("2019-02-16T00:00:00-02:00", 1).range(18.0, 18.0).avg(18.0),
            bucket("2019-02-16T23:00:00-02:00", 1).range(20.0, 20.0).avg(20.0),
            bucket("2019-02-16T23:00:00-03:00", 1).range(22.0, 22.0).avg(22.0),
            bucket("2019-02-17T00:00:00-03:00", 1).range(25.0, 25.0).avg(25.0),
        ],
    },
    Case {
        name: "New York 2026-03-08, spring forward, interval device (days)",
        zone: NY,
        kind: Interval,
        scale: 1.0,
        rollover: None,
        baseline: None,
        readings: NY_SPRING_INTERVAL,
        bucket: Day,
        expected: &[
            bucket("2026-03-07T00:00:00-05:00", 1).used(1.5).range(1.5, 1.5),
            // 2 + 0.5 + 0 + 4
            bucket("2026-03-08T00:00:00-05:00", 4).used(6.5).range(-0.25, 4.0).negatives(1),
            bucket("2026-03-09T00:00:00-04:00", 1).used(1.0).range(1.0, 1.0),
        ],
    },
    Case {
        name: "New York 2026-03-08, spring forward, interval device (hours)",
        zone: NY,
        kind: Interval,
        scale: 1.0,
        rollover: None,
        baseline: None,
        readings: NY_SPRING_INTERVAL,
        bucket: Hour,
        expected: &[
            bucket("2026-03-07T23:00:00-05:00", 1).used(1.5).range(1.5, 1.5),
            bucket("2026-03-08T01:00:00-05:00", 1).used(2.0).range(2.0, 2.0),
            // 02:00 did not exist. 0.5 + 0
            bucket("2026-03-08T03:00:00-04:00", 2).used(0.5).range(-0.25, 0.5).negatives(1),
            bucket("2026-03-08T23:00:00-04:00", 1).used(4.0).range(4.0, 4.0),
            bucket("2026-03-09T00:00:00-04:00", 1).used(1.0).range(1.0, 1.0),
        ],
    },
    Case {
        name: "New York 2026-11-01, fall back, counter (hours: 01:00 twice)",
        zone: NY,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: NY_FALL_BASELINE,
        readings: NY_FALL_COUNTER,
        bucket: Hour,
        expected: &[
            // 1000 - 998
            bucket("2026-11-01T00:00:00-04:00", 1).used(2.0).range(1000.0, 1000.0),
            // (1003 - 1000) + (1004 - 1003)
            bucket("2026-11-01T01:00:00-04:00", 2).used(4.0).range(1003.0, 1004.0),
            // (1010 - 1004) + (1011 - 1010)
            bucket("2026-11-01T01:00:00-05:00", 2).used(7.0).range(1010.0, 1011.0),
            // 1020 - 1011
            bucket("2026-11-01T02:00:00-05:00", 1).used(9.0).range(1020.0, 1020.0),
        ],
    },
    Case {
        name: "New York 2026-11-01, fall back, counter (the 25-hour day)",
        zone: NY,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: NY_FALL_BASELINE,
        readings: NY_FALL_COUNTER,
        bucket: Day,
        expected: &[
            // 1020 - 998
            bucket("2026-11-01T00:00:00-04:00", 6).used(22.0).range(1000.0, 1020.0),
        ],
    },
    Case {
        name: "month end in local time: 23:30 on the 31st and 00:30 on the 1st (months)",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: None,
        readings: MONTH_END,
        bucket: Month,
        expected: &[
            // 250 - 200
            bucket("2026-01-01T00:00:00-03:00", 2).used(50.0).range(200.0, 250.0),
            // (251.5 - 250) + (300 - 251.5)
            bucket("2026-02-01T00:00:00-03:00", 2).used(50.0).range(251.5, 300.0),
            // 300.25 - 300
            bucket("2026-03-01T00:00:00-03:00", 1).used(0.25).range(300.25, 300.25),
        ],
    },
    Case {
        name: "month end in local time (days)",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: None,
        readings: MONTH_END,
        bucket: Day,
        expected: &[
            bucket("2026-01-15T00:00:00-03:00", 1).used(0.0).range(200.0, 200.0),
            bucket("2026-01-31T00:00:00-03:00", 1).used(50.0).range(250.0, 250.0),
            bucket("2026-02-01T00:00:00-03:00", 1).used(1.5).range(251.5, 251.5),
            bucket("2026-02-28T00:00:00-03:00", 1).used(48.5).range(300.0, 300.0),
            bucket("2026-03-01T00:00:00-03:00", 1).used(0.25).range(300.25, 300.25),
        ],
    },
    Case {
        name: "the same month-end readings bucketed in UTC fall in other months",
        zone: "UTC",
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: None,
        readings: MONTH_END,
        bucket: Month,
        expected: &[
            bucket("2026-01-01T00:00:00Z", 1).used(0.0).range(200.0, 200.0),
            // (250 - 200) + (251.5 - 250)
            bucket("2026-02-01T00:00:00Z", 2).used(51.5).range(250.0, 251.5),
            // (300 - 251.5) + (300.25 - 300)
            bucket("2026-03-01T00:00:00Z", 2).used(48.75).range(300.0, 300.25),
        ],
    },
    Case {
        name: "half-hour zone: Kolkata hours start at hh:30 UTC",
        zone: "Asia/Kolkata",
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: None,
        readings: &[
            ("2026-04-01T04:15:00Z", 10.0), // 09:45 IST
            ("2026-04-01T04:45:00Z", 11.0), // 10:15 IST
            ("2026-04-01T05:29:00Z", 12.5), // 10:59 IST
            ("2026-04-01T05:30:00Z", 13.0), // 11:00 IST
        ],
        bucket: Hour,
        expected: &[
            bucket("2026-04-01T09:00:00+05:30", 1).used(0.0).range(10.0, 10.0),
            // (11 - 10) + (12.5 - 11)
            bucket("2026-04-01T10:00:00+05:30", 2).used(2.5).range(11.0, 12.5),
            bucket("2026-04-01T11:00:00+05:30", 1).used(0.5).range(13.0, 13.0),
        ],
    },
    Case {
        name: "scale factor: a pulse counter of 0.01 m³ per pulse",
        zone: SP,
        kind: Counter,
        scale: 0.01,
        rollover: None,
        baseline: None,
        readings: &[
            ("2026-09-01T08:00:00-03:00", 123_400.0),
            ("2026-09-01T12:00:00-03:00", 123_450.0),
            ("2026-09-01T18:00:00-03:00", 123_575.0),
        ],
        bucket: Day,
        expected: &[
            // 50 * 0.01 + 125 * 0.01
            bucket("2026-09-01T00:00:00-03:00", 3).used(1.75).range(1234.0, 1235.75),
        ],
    },
    Case {
        name: "interval device with a scale factor",
        zone: SP,
        kind: Interval,
        scale: 0.5,
        rollover: None,
        baseline: Some(("2026-09-02T09:45:00-03:00", 8.0)),
        readings: &[
            ("2026-09-02T10:15:00-03:00", 2.0),
            ("2026-09-02T10:45:00-03:00", 3.0),
            ("2026-09-02T11:15:00-03:00", 0.0),
            ("2026-09-02T11:45:00-03:00", 4.5),
        ],
        bucket: Hour,
        expected: &[
            // The baseline's own value is not consumption of the window. 1 + 1.5
            bucket("2026-09-02T10:00:00-03:00", 2).used(2.5).range(1.0, 1.5),
            // 0 + 2.25
            bucket("2026-09-02T11:00:00-03:00", 2).used(2.25).range(0.0, 2.25),
        ],
    },
    Case {
        name: "gauge readings are averaged, never summed; a baseline changes nothing",
        zone: SP,
        kind: Gauge,
        scale: 1.0,
        rollover: None,
        baseline: Some(("2026-07-09T23:00:00-03:00", 100.0)),
        readings: &[
            ("2026-07-10T00:00:00-03:00", -5.0),
            ("2026-07-10T06:00:00-03:00", -1.5),
            ("2026-07-10T12:00:00-03:00", 3.0),
            ("2026-07-10T18:00:00-03:00", 2.5),
            ("2026-07-11T00:00:00-03:00", 1.0),
        ],
        bucket: Day,
        expected: &[
            // (-5 - 1.5 + 3 + 2.5) / 4 = -1 / 4
            bucket("2026-07-10T00:00:00-03:00", 4).range(-5.0, 3.0).avg(-0.25),
            bucket("2026-07-11T00:00:00-03:00", 1).range(1.0, 1.0).avg(1.0),
        ],
    },
    Case {
        name: "readings at or before the baseline are not part of the window",
        zone: SP,
        kind: Counter,
        scale: 1.0,
        rollover: None,
        baseline: Some(("2026-03-10T10:00:00-03:00", 50.0)),
        readings: &[
            ("2026-03-10T10:00:00-03:00", 60.0),
            ("2026-03-10T09:00:00-03:00", 40.0),
            ("2026-03-10T11:00:00-03:00", 55.0),
        ],
        bucket: Hour,
        expected: &[
            // 55 - 50
            bucket("2026-03-10T11:00:00-03:00", 1).used(5.0).range(55.0, 55.0),
        ],
    },
];

fn readings_of(case: &Case) -> Vec<(chrono::DateTime<chrono::Utc>, f64)> {
    case.readings.iter().map(|&(t, v)| (utc(t), v)).collect()
}

fn run(
    case: &Case,
    baseline: Option<(chrono::DateTime<chrono::Utc>, f64)>,
    readings: &[(chrono::DateTime<chrono::Utc>, f64)],
) -> Vec<Rollup> {
    let meter = Meter::new(case.kind, case.scale, case.rollover).unwrap();
    rollup(meter, baseline, readings, TimeZone::parse(case.zone).unwrap(), case.bucket)
}

fn matches(got: &Rollup, want: &Expected) -> bool {
    got.start == utc(want.start)
        && close_opt(got.consumption, want.consumption)
        && close_opt(got.min, want.min)
        && close_opt(got.avg, want.avg)
        && close_opt(got.max, want.max)
        && (got.count, got.resets, got.rollovers, got.negatives)
            == (want.count, want.resets, want.rollovers, want.negatives)
}

#[test]
fn every_corpus_series_rolls_up_to_its_hand_computed_buckets() {
    for case in CASES {
        let baseline = case.baseline.map(|(t, v)| (utc(t), v));
        let got = run(case, baseline, &readings_of(case));
        assert_eq!(got.len(), case.expected.len(), "{}: {got:#?}", case.name);
        for (g, want) in got.iter().zip(case.expected) {
            assert!(matches(g, want), "{}:\n got {g:#?}\nwant {want:#?}", case.name);
        }
    }
}

#[test]
fn corpus_results_do_not_depend_on_arrival_order() {
    for case in CASES {
        let baseline = case.baseline.map(|(t, v)| (utc(t), v));
        let readings = readings_of(case);
        let mut instants: Vec<_> = readings.iter().map(|(t, _)| *t).collect();
        instants.sort();
        instants.dedup();
        if instants.len() < readings.len() {
            continue; // with repeated instants the first given wins, so order matters on purpose
        }
        let reversed: Vec<_> = readings.iter().rev().copied().collect();
        assert_eq!(run(case, baseline, &reversed), run(case, baseline, &readings), "{}", case.name);
    }
}

#[test]
fn corpus_split_at_any_bucket_edge_with_the_right_baseline_gives_the_same_buckets() {
    for case in CASES {
        let baseline = case.baseline.map(|(t, v)| (utc(t), v));
        let readings = readings_of(case);
        let whole = run(case, baseline, &readings);
        let stored = window(baseline, &readings);
        for edge in whole.iter().map(|r| r.start) {
            let before: Vec<_> = readings.iter().copied().filter(|(t, _)| *t < edge).collect();
            let after: Vec<_> = readings.iter().copied().filter(|(t, _)| *t >= edge).collect();
            let edge_baseline = stored.iter().copied().rfind(|(t, _)| *t < edge).or(baseline);
            let mut split = run(case, baseline, &before);
            split.extend(run(case, edge_baseline, &after));
            assert_eq!(split, whole, "{} split at {edge}", case.name);
        }
    }
}

#[test]
fn recomputing_the_buckets_a_late_batch_touches_matches_a_full_rollup() {
    let case = CASES.iter().find(|c| c.readings == LATE_BATCH).unwrap();
    let all = readings_of(case);
    let whole = run(case, None, &all);
    // The late readings are 10:00..13:00; the first stored reading after them is 14:00, whose
    // interval they shortened. So the store recomputes 10:00..15:00 with the 09:00 baseline.
    let (from, to) = (utc("2026-08-20T10:00:00-03:00"), utc("2026-08-20T15:00:00-03:00"));
    let affected: Vec<_> = all.iter().copied().filter(|(t, _)| (from..to).contains(t)).collect();
    let recomputed = run(case, Some((utc("2026-08-20T09:00:00-03:00"), 1010.0)), &affected);
    let expected: Vec<_> = whole.iter().copied().filter(|r| (from..to).contains(&r.start)).collect();
    assert_eq!(recomputed.len(), 5);
    assert_eq!(recomputed, expected);
    assert_eq!(recomputed[4].consumption, Some(10.0), "14:00 no longer closes the whole outage");
}

#[test]
fn tolerance_helper_accepts_rounding_and_nothing_more() {
    assert!(close(0.1 + 0.2, 0.3));
    assert!(!close(0.3, 0.300_001));
    assert!(close_opt(None, None) && !close_opt(Some(0.0), None));
}
