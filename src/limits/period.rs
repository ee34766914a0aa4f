//! Calendar arithmetic for limit windows and budget periods, in UTC: which window
//! or period an instant falls in, and when the next one starts.

use crate::config::BudgetPeriod;

/// Seconds in a minute-long rate window.
pub const MINUTE: u64 = 60;

/// The window an instant falls in (`unix_secs / MINUTE`) and the seconds left in it.
pub fn minute_window(unix_secs: u64) -> (u64, u64) {
    (unix_secs / MINUTE, MINUTE - unix_secs % MINUTE)
}

/// The period an instant falls in (a number that changes when the period does) and
/// the seconds until the next one begins.
pub fn budget_period(unix_secs: u64, period: BudgetPeriod) -> (u64, u64) {
    let days = unix_secs / 86_400;
    let into_day = unix_secs % 86_400;
    match period {
        BudgetPeriod::Day => (days, 86_400 - into_day),
        BudgetPeriod::Week => {
            // 1970-01-01 was a Thursday; weeks start on Monday.
            let monday_based = days + 3;
            let week = monday_based / 7;
            let days_left = 7 - monday_based % 7;
            (week, days_left * 86_400 - into_day)
        }
        BudgetPeriod::Month => {
            let (year, month, day) = civil_from_days(days);
            let id = year * 12 + (month - 1);
            let days_left = days_in_month(year, month) - day + 1;
            (id, days_left * 86_400 - into_day)
        }
    }
}

/// The first day (days since 1970-01-01) of the period `unix_secs` falls in.
pub fn period_start_day(unix_secs: u64, period: BudgetPeriod) -> u64 {
    let days = unix_secs / 86_400;
    match period {
        BudgetPeriod::Day => days,
        BudgetPeriod::Week => days - (days + 3) % 7,
        BudgetPeriod::Month => days - (civil_from_days(days).2 - 1),
    }
}

/// `YYYY-MM-DD` of a count of days since 1970-01-01.
pub fn date_text(days: u64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Year, month (1–12) and day (1–31) of a count of days since 1970-01-01
/// (the proleptic Gregorian calendar; Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// `6m0s`, `1s`, `59s`: a reset time as OpenAI's `x-ratelimit-reset-*` headers write it.
pub fn reset_text(secs: u64) -> String {
    super::rate_headers::ResetText::default()
        .write(secs)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-04T02:30:15Z.
    const NOW: u64 = 1_796_351_415;

    #[test]
    fn minutes_days_weeks_and_months_end_when_the_calendar_says() {
        assert_eq!(minute_window(NOW).1, 45);
        assert_eq!(minute_window(NOW + 45).0, minute_window(NOW).0 + 1);
        let (_, day_left) = budget_period(NOW, BudgetPeriod::Day);
        assert_eq!(day_left, 86_400 - (2 * 3600 + 30 * 60 + 15));
        // A Friday: Monday comes in 3 days less the time already gone today.
        let (_, week_left) = budget_period(NOW, BudgetPeriod::Week);
        assert_eq!(week_left, 3 * 86_400 - (2 * 3600 + 30 * 60 + 15));
        // December has 31 days: 28 days left from the 4th, less today's time.
        let (month, month_left) = budget_period(NOW, BudgetPeriod::Month);
        assert_eq!(month_left, 28 * 86_400 - (2 * 3600 + 30 * 60 + 15));
        let (next, _) = budget_period(NOW + month_left, BudgetPeriod::Month);
        assert_eq!(next, month + 1, "January 2027");
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
    }

    #[test]
    fn periods_start_on_the_day_monday_and_first_of_the_month() {
        let today = NOW / 86_400;
        assert_eq!(period_start_day(NOW, BudgetPeriod::Day), today);
        assert_eq!(
            date_text(period_start_day(NOW, BudgetPeriod::Week)),
            "2026-11-30"
        );
        assert_eq!(
            date_text(period_start_day(NOW, BudgetPeriod::Month)),
            "2026-12-01"
        );
    }

    #[test]
    fn reset_times_read_as_openai_writes_them() {
        assert_eq!(reset_text(1), "1s");
        assert_eq!(reset_text(360), "6m0s");
        assert_eq!(reset_text(3723), "1h2m3s");
    }
}
