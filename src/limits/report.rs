//! The usage report of one gateway key over a day, week or month (UTC): requests,
//! tokens by kind and cost, per model and in total.

use serde_json::{json, Value};

use super::period::{date_text, period_start_day};
use super::{LimitStore, StoreError, UsageRecord};
use crate::config::BudgetPeriod;

/// `day`, `week` or `month`.
pub fn parse_period(text: &str) -> Option<BudgetPeriod> {
    match text {
        "day" => Some(BudgetPeriod::Day),
        "week" => Some(BudgetPeriod::Week),
        "month" => Some(BudgetPeriod::Month),
        _ => None,
    }
}

fn period_name(period: BudgetPeriod) -> &'static str {
    match period {
        BudgetPeriod::Day => "day",
        BudgetPeriod::Week => "week",
        BudgetPeriod::Month => "month",
    }
}

fn usage_json(u: &UsageRecord) -> Value {
    json!({
        "requests": u.requests,
        "tokens": {
            "input": u.input,
            "output": u.output,
            "cache_read": u.cache_read,
            "cache_write": u.cache_write,
            "reasoning": u.reasoning,
        },
        // Billed per search, apart from the tokens; in `cost_usd` at its price.
        "web_searches": u.web_searches,
        "cost_usd": u.cost_nanos as f64 / 1_000_000_000.0,
        // The requests whose tokens above are estimated, not reported (a stream
        // whose usage never came, a whole answer its client left).
        "requests_estimated": u.estimated,
    })
}

/// Whether `report` is of a name that no key goes by (`known` false) and under which
/// nothing was used: a name mistyped, said as such rather than shown as a key left idle.
/// A key removed from the config still reports what it used.
pub fn reports_no_key(report: &Value, known: bool) -> bool {
    !known && report["total"]["requests"] == 0
}

/// What `key` used in the `period` that `now` (Unix seconds) falls in.
pub async fn usage_report(
    store: &dyn LimitStore,
    key: &str,
    period: BudgetPeriod,
    now: u64,
) -> Result<Value, StoreError> {
    let first = period_start_day(now, period);
    let last = now / 86_400;
    let per_model = store.usage(key, first, last).await?;
    let mut total = UsageRecord::default();
    let mut models = serde_json::Map::new();
    for (model, usage) in &per_model {
        total.add(usage);
        models.insert(model.clone(), usage_json(usage));
    }
    Ok(json!({
        "key": key,
        "period": period_name(period),
        "from": date_text(first),
        "to": date_text(last),
        "models": models,
        "total": usage_json(&total),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MemoryStore;

    #[test]
    fn the_report_sums_the_days_of_the_period_per_model() {
        let store = MemoryStore::default();
        let now = 1_796_351_415; // 2026-12-04
        let today = now / 86_400;
        let one = UsageRecord {
            requests: 1,
            input: 10,
            output: 5,
            cost_nanos: 1_500_000,
            ..UsageRecord::default()
        };
        let estimated = UsageRecord {
            estimated: 1,
            ..one
        };
        let report = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async {
                store.record_usage("team-a", "gpt-4o", today, &one).unwrap();
                store
                    .record_usage("team-a", "gpt-4o", today - 2, &one)
                    .unwrap();
                store
                    .record_usage("team-a", "claude", today, &estimated)
                    .unwrap();
                // Last month, and another key: not in this report.
                store
                    .record_usage("team-a", "gpt-4o", today - 10, &one)
                    .unwrap();
                store.record_usage("team-b", "gpt-4o", today, &one).unwrap();
                usage_report(&store, "team-a", BudgetPeriod::Month, now)
                    .await
                    .unwrap()
            });
        assert_eq!(report["from"], "2026-12-01");
        assert_eq!(report["to"], "2026-12-04");
        assert_eq!(report["models"]["gpt-4o"]["requests"], 2);
        assert_eq!(report["models"]["gpt-4o"]["tokens"]["input"], 20);
        assert_eq!(report["models"]["claude"]["requests"], 1);
        assert_eq!(report["models"]["claude"]["requests_estimated"], 1);
        assert_eq!(report["models"]["gpt-4o"]["requests_estimated"], 0);
        assert_eq!(report["total"]["requests_estimated"], 1);
        assert_eq!(report["total"]["requests"], 3);
        assert!((report["total"]["cost_usd"].as_f64().unwrap() - 0.0045).abs() < 1e-9);
    }
}
