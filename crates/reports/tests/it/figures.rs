//! Report figures over the stored history of [`crate::support`]: each bucket equal to a
//! hand-computed literal and to the rollups the store keeps (day rows added up by local date in
//! the test, month rows as stored), for a month with a DST change and a month end, an ISO week
//! across a month end, billing months from the 15th, an incomplete day, a device comparison,
//! period-over-period and the month-end projection.

use crate::support::{History, assert_close, history, now, sao_paulo, utc};
use chrono::NaiveDate;
use tds_domain::Bucket;
use tds_domain::buckets::day_start;
use tds_reports::model::{Cell, Mark};
use tds_reports::query::{ConsumptionQuery, consumption};
use tds_reports::{Compare, DayRange, Lang, ReportBucket, ReportRequest, Scope};
use tds_store::Store;
use tds_testkit::conformance;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn q(h: &History, scope: Scope, from: &str, to: &str, bucket: ReportBucket) -> ConsumptionQuery {
    ConsumptionQuery {
        tenant: h.tenant,
        scope,
        range: DayRange::new(d(from), d(to), bucket).unwrap(),
        bucket,
    }
}

fn d01(h: &History) -> Scope {
    Scope::Devices { gateway: h.mac, codes: vec![h.d01.code.clone()] }
}

/// The day rollups of the devices summed over local days `from..=to`: the store's own figures.
async fn day_rows(
    store: &Store,
    h: &History,
    devices: &[&tds_store::devices::Device],
    from: &str,
    to: &str,
) -> (f64, u32) {
    let tz = sao_paulo();
    let (start, end) = (day_start(tz, d(from)), day_start(tz, d(to).succ_opt().unwrap()));
    let mut sum = (0.0, 0);
    for dev in devices {
        for r in store.rollups().for_device(h.tenant, dev.id, Bucket::Day, start, end).await.unwrap() {
            sum.0 += r.consumption.unwrap();
            sum.1 += r.count;
        }
    }
    sum
}

async fn a_month_with_a_dst_change_and_a_month_end_in_sao_paulo(store: Store) {
    let h = history(&store).await;
    // Days across the start of daylight saving (2018-11-04 began at 01:00 -02, 23 hours).
    let c =
        consumption(&store, &q(&h, d01(&h), "2018-11-03", "2018-11-05", ReportBucket::Day)).await.unwrap();
    let days: Vec<_> = c.series[0].buckets.iter().map(|b| (b.consumption, b.readings, b.expected)).collect();
    assert_eq!(days, [(72.0, 288, 288), (69.0, 276, 276), (72.0, 288, 288)]);
    assert_eq!(
        c.axis.periods[1].start,
        utc("2018-11-04T03:00:00Z"),
        "the day without a midnight starts at 01:00 -02"
    );
    assert_eq!(c.axis.periods[2].start, utc("2018-11-05T02:00:00Z"));
    for (i, day) in ["2018-11-03", "2018-11-04", "2018-11-05"].iter().enumerate() {
        let (sum, count) = day_rows(&store, &h, &[&h.d01], day, day).await;
        assert_eq!(
            (c.series[0].buckets[i].consumption, c.series[0].buckets[i].readings),
            (sum, count),
            "{day}"
        );
    }

    // Calendar months over the month end: October (only its 28th..31st) and November.
    let c =
        consumption(&store, &q(&h, d01(&h), "2018-10-28", "2018-11-30", ReportBucket::Month)).await.unwrap();
    let months = &c.series[0].buckets;
    assert_eq!(c.axis.periods.len(), 2);
    assert!(c.axis.periods[0].clipped && !c.axis.periods[1].clipped);
    assert_close(months[0].consumption, 287.75, "October 28..31");
    assert_close(months[1].consumption, 2157.0, "November");
    assert_eq!(
        (months[1].readings, months[1].expected),
        (8580, 8628),
        "719 hours of 12 readings, 48 missing"
    );
    assert!(months[1].incomplete());
    // The store's own month row of November says the same.
    let tz = sao_paulo();
    let month_rows = store
        .rollups()
        .for_device(
            h.tenant,
            h.d01.id,
            Bucket::Month,
            day_start(tz, d("2018-11-01")),
            day_start(tz, d("2018-12-01")),
        )
        .await
        .unwrap();
    assert_eq!(month_rows.len(), 1);
    assert_close(month_rows[0].consumption.unwrap(), months[1].consumption, "month rollup");
    assert_eq!((month_rows[0].count, month_rows[0].expected), (months[1].readings, months[1].expected));
    // October's last local day ends at 03:00Z on November 1st: the 00:00Z..02:55Z readings are October's.
    let (oct, _) = day_rows(&store, &h, &[&h.d01], "2018-10-28", "2018-10-31").await;
    assert_close(oct, months[0].consumption, "October from day rows");
}

async fn an_iso_week_across_a_month_end_and_an_incomplete_day(store: Store) {
    let h = history(&store).await;
    let c = consumption(&store, &q(&h, Scope::Tenant, "2018-10-29", "2018-11-30", ReportBucket::Week))
        .await
        .unwrap();
    assert_eq!(c.series.len(), 1, "one medium and unit");
    assert_eq!(c.series[0].devices, 2);
    let weeks: Vec<_> = c.series[0].buckets.iter().map(|b| (b.consumption, b.readings, b.expected)).collect();
    // D01 + D02 = 3 x D01. Week 1: Mon 29 Oct .. Sun 4 Nov = 6 x 72 + 69 = 501 per D01.
    assert_eq!(
        weeks,
        [
            (1503.0, 2 * 2004, 2 * 2004),
            (1512.0, 2 * 2016, 2 * 2016),
            (1512.0, 2 * 2016, 2 * 2016),
            (1512.0, 2 * 2016 - 48, 2 * 2016),
            (1080.0, 2 * 1440, 2 * 1440),
        ]
    );
    let starts: Vec<_> = c.axis.periods.iter().map(|p| p.local_start.date()).collect();
    assert_eq!(starts, [d("2018-10-29"), d("2018-11-05"), d("2018-11-12"), d("2018-11-19"), d("2018-11-26")]);
    assert!(c.axis.periods[4].clipped, "the last week is cut at the 30th");
    let (sum, count) = day_rows(&store, &h, &[&h.d01, &h.d02], "2018-10-29", "2018-11-04").await;
    assert_eq!((weeks[0].0, weeks[0].1), (sum, count), "week 1 from the day rows");
    assert!(c.series[0].buckets[3].incomplete() && !c.series[0].buckets[2].incomplete());

    // The incomplete day itself.
    let c =
        consumption(&store, &q(&h, d01(&h), "2018-11-20", "2018-11-20", ReportBucket::Day)).await.unwrap();
    let day = c.series[0].buckets[0];
    assert_eq!((day.consumption, day.readings, day.expected), (72.0, 240, 288));
    assert_eq!(day.completeness(), Some(240.0 / 288.0));
    // Its hours: the four missing ones have no readings and count as incomplete.
    let c =
        consumption(&store, &q(&h, d01(&h), "2018-11-20", "2018-11-20", ReportBucket::Hour)).await.unwrap();
    let empty: Vec<_> =
        c.series[0].buckets.iter().enumerate().filter(|(_, b)| b.readings == 0).map(|(i, _)| i).collect();
    assert_eq!(empty, [10, 11, 12, 13], "10:00..14:00 local");
    assert_eq!(
        c.series[0].buckets[14].consumption,
        12.0 * 0.25 + 4.0 * 3.0,
        "the reading after the gap closes 4 hours"
    );
}

async fn billing_months_from_the_15th(store: Store) {
    let h = history(&store).await;
    store.tenants().set_billing_day(h.tenant, Some(15)).await.unwrap();
    let c =
        consumption(&store, &q(&h, Scope::Gateway(h.mac), "2018-10-15", "2018-11-30", ReportBucket::Month))
            .await
            .unwrap();
    assert_eq!(c.billing_day, Some(15));
    let spans: Vec<_> = c.axis.periods.iter().map(|p| (p.first_day, p.last_day, p.clipped)).collect();
    assert_eq!(spans, [(d("2018-10-15"), d("2018-11-14"), false), (d("2018-11-15"), d("2018-11-30"), true)]);
    // D01: Oct 28 (71.75) + Oct 29..31 (216) + Nov 1..14 (14 x 72 - 3) = 1292.75; x 3 for both.
    let b = &c.series[0].buckets;
    assert_close(b[0].consumption, 3.0 * 1292.75, "billing month Oct 15 .. Nov 14");
    assert_close(b[1].consumption, 3.0 * 16.0 * 72.0, "Nov 15 .. 30");
    let (sum, count) = day_rows(&store, &h, &[&h.d01, &h.d02], "2018-10-15", "2018-11-14").await;
    assert_close(b[0].consumption, sum, "from the day rows");
    assert_eq!(b[0].readings, count);
    // 31 days of which one is 23 hours long, at 12 readings an hour, for two devices.
    assert_eq!(b[0].expected, 2 * (31 * 288 - 12));
    assert!(b[0].incomplete(), "the readings start on October 28");
}

async fn a_report_compares_devices_and_periods_and_projects_the_month(store: Store) {
    let h = history(&store).await;
    let req = ReportRequest {
        tenant: h.tenant,
        scope: Scope::Devices { gateway: h.mac, codes: vec![h.d01.code.clone(), h.d02.code.clone()] },
        range: DayRange::new(d("2018-11-01"), d("2018-11-30"), ReportBucket::Day).unwrap(),
        bucket: ReportBucket::Day,
        compare: vec![Compare::Previous, Compare::Year],
        lang: Lang::En,
        now: now(),
    };
    let r = tds_reports::build(&store, &req).await.unwrap();
    let titles: Vec<_> = r.sections.iter().map(|s| s.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "Summary",
            "D01 Medidor D01 (kWh)",
            "D02 Medidor D02 (kWh)",
            "Period comparison",
            "Month-end projection"
        ]
    );
    assert_eq!(r.zone, "America/Sao_Paulo");
    // The comparison: totals side by side and each one's share.
    let summary = &r.sections[0];
    assert_eq!(summary.rows[0].cells[3], Cell::Number(2157.0));
    assert_eq!(summary.rows[1].cells[3], Cell::Number(4314.0));
    assert_eq!(summary.rows[0].cells[7], Cell::Percent(2157.0 / 6471.0));
    assert_eq!((summary.rows[0].mark, summary.rows[1].mark), (Mark::Incomplete, Mark::Whole));
    // Days: the 4th has 23 hours, the 20th is incomplete and marked so.
    let days = &r.sections[1];
    assert_eq!(days.rows.len(), 30);
    assert_eq!(
        days.rows[3].cells[..5],
        [
            Cell::Date(d("2018-11-04")),
            Cell::Date(d("2018-11-04")),
            Cell::Number(69.0),
            Cell::Count(276),
            Cell::Count(276)
        ]
    );
    assert_eq!(days.rows[19].mark, Mark::Incomplete);
    assert_eq!(days.rows[19].cells[6], Cell::Text("incomplete".into()));
    assert_eq!(days.total.as_ref().unwrap().cells[2], Cell::Number(2157.0));
    // Period over period: October (only from the 28th: 287.75) and November 2017 (nothing: no change shown).
    let cmp = &r.sections[3];
    assert_eq!(cmp.rows[0].cells[2], Cell::Number(2157.0));
    assert_eq!(cmp.rows[0].cells[3], Cell::Number(287.75));
    assert_eq!(cmp.rows[0].cells[4], Cell::Percent((2157.0 - 287.75) / 287.75));
    assert_eq!(cmp.rows[0].cells[5], Cell::Number(0.0));
    assert_eq!(cmp.rows[0].cells[6], Cell::Empty, "no change from zero");
    // The projection: 227 hours of 719 elapsed at 3 kWh an hour: 681 so far, 2157 at month end.
    let p = &r.sections[4];
    assert_eq!(p.rows[0].mark, Mark::Projection);
    assert_close(p.rows[0].cells[3].as_f64().unwrap(), 681.0, "so far");
    assert_close(p.rows[0].cells[4].as_f64().unwrap(), 227.0 / 719.0, "elapsed");
    assert_close(p.rows[0].cells[5].as_f64().unwrap(), 2157.0, "projected");
    assert_close(p.rows[1].cells[5].as_f64().unwrap(), 4314.0, "projected D02");
}

async fn scopes_and_ranges_are_checked(store: Store) {
    let h = history(&store).await;
    let other = Scope::Gateway(tds_domain::Mac::parse("aa:bb:cc:99:99:99").unwrap());
    let err =
        consumption(&store, &q(&h, other, "2018-11-01", "2018-11-02", ReportBucket::Day)).await.unwrap_err();
    assert!(matches!(err, tds_reports::ReportError::NotFound(_)), "{err}");
    assert!(DayRange::new(d("2015-01-01"), d("2018-11-30"), ReportBucket::Month).is_err());
    // A medium without devices has no series.
    let c = consumption(
        &store,
        &q(&h, Scope::Medium(tds_domain::Medium::Water), "2018-11-01", "2018-11-02", ReportBucket::Day),
    )
    .await
    .unwrap();
    assert!(c.series.is_empty());
}

conformance!(
    a_month_with_a_dst_change_and_a_month_end_in_sao_paulo,
    an_iso_week_across_a_month_end_and_an_incomplete_day,
    billing_months_from_the_15th,
    a_report_compares_devices_and_periods_and_projects_the_month,
    scopes_and_ranges_are_checked,
);
