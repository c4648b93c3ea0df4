//! Incremental reads through the CRM search API (vendor-apis.md §3.4): one time window at a
//! time, filtered and sorted ascending on the last-modified property, paged with `after`.
//!
//! Search stops at 10,000 results per query (paging past it is a 400), so a window whose
//! `total` exceeds that is narrowed before it is paged ([`plan_window`]).

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// §3.4: search `limit` is at most 200 (it used to be 100; list endpoints stay at 100).
pub const MAX_SEARCH_LIMIT: u32 = 200;
/// §3.4: a search query returns at most 10,000 results in total.
pub const MAX_RESULTS_PER_QUERY: u64 = 10_000;

/// §3.3: contacts use `lastmodifieddate`; other objects `hs_lastmodifieddate`.
pub fn last_modified_property(object: &str) -> &'static str {
    match object {
        "contacts" | "contact" | "0-1" => "lastmodifieddate",
        _ => "hs_lastmodifieddate",
    }
}

/// `{prefix}/{object}/search` (POST); `prefix` from config as in §3.2.
pub fn search_path(prefix: &str, object: &str) -> String {
    format!("{}/{object}/search", prefix.trim_end_matches('/'))
}

/// A half-open window of last-modified times, epoch milliseconds: `start_ms <= t < end_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Window {
    pub fn len_ms(&self) -> i64 {
        self.end_ms.saturating_sub(self.start_ms)
    }

    /// The window after this one, at most `max_len_ms` long and ending no later than
    /// `horizon_ms` — pass now minus a few seconds, as search is eventually consistent (§3.4).
    /// `None` when there is nothing new to read yet.
    pub fn following(&self, max_len_ms: i64, horizon_ms: i64) -> Option<Window> {
        let end = self
            .end_ms
            .saturating_add(max_len_ms.max(1))
            .min(horizon_ms);
        (end > self.end_ms).then_some(Window {
            start_ms: self.end_ms,
            end_ms: end,
        })
    }
}

/// One search call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchRequest {
    /// `contacts`, `deals`, `companies`, or a custom object type.
    pub object: String,
    pub properties: Vec<String>,
    pub window: Window,
    /// `paging.next.after` of the previous page; `None` for the first page.
    pub after: Option<String>,
    /// Clamped to 1..=[`MAX_SEARCH_LIMIT`].
    pub limit: u32,
}

impl SearchRequest {
    pub fn first_page(object: &str, properties: &[&str], window: Window, limit: u32) -> Self {
        SearchRequest {
            object: object.to_owned(),
            properties: properties.iter().map(|p| (*p).to_owned()).collect(),
            window,
            after: None,
            limit,
        }
    }

    /// The JSON body: one filter group (filters ANDed) with `GTE start` and `LT end`, one
    /// ascending sort on the same property — search allows a single sort (§3.4).
    pub fn body(&self) -> Value {
        let prop = last_modified_property(&self.object);
        let mut properties = self.properties.clone();
        if !properties.iter().any(|p| p == prop) {
            properties.push(prop.to_owned());
        }
        let mut body = json!({
            "filterGroups": [{"filters": [
                {"propertyName": prop, "operator": "GTE", "value": self.window.start_ms.to_string()},
                {"propertyName": prop, "operator": "LT", "value": self.window.end_ms.to_string()},
            ]}],
            "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
            "properties": properties,
            "limit": self.limit.clamp(1, MAX_SEARCH_LIMIT),
        });
        if let Some(after) = &self.after {
            body["after"] = Value::String(after.clone());
        }
        body
    }

    /// The request for the page after `page`, or `None` on the last page — including when the
    /// next offset would pass the 10,000-result cap, which HubSpot answers with a 400 (§3.4).
    pub fn next(&self, page: &SearchPage) -> Option<SearchRequest> {
        let after = page.next_after.as_ref()?;
        // `after` is a numeric offset carried as a string (§3.4).
        if let Ok(offset) = after.parse::<u64>()
            && offset >= MAX_RESULTS_PER_QUERY
        {
            return None;
        }
        Some(SearchRequest {
            after: Some(after.clone()),
            ..self.clone()
        })
    }
}

/// One record as search returns it; property values are strings or null (§3.3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrmObject {
    pub id: String,
    #[serde(default)]
    pub properties: BTreeMap<String, Option<String>>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    #[serde(default)]
    pub archived: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// Matches of the whole query, not of this page.
    pub total: u64,
    pub results: Vec<CrmObject>,
    /// `paging.next.after`; absent on the last page.
    pub next_after: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HubSpot's search response could not be read: {0}")]
pub struct ReadError(pub String);

pub fn parse_search_page(body: &[u8]) -> Result<SearchPage, ReadError> {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(default)]
        total: u64,
        results: Vec<CrmObject>,
        paging: Option<Paging>,
    }
    #[derive(serde::Deserialize)]
    struct Paging {
        next: Option<Next>,
    }
    #[derive(serde::Deserialize)]
    struct Next {
        after: Value,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| ReadError(e.to_string()))?;
    let next_after = match raw.paging.and_then(|p| p.next).map(|n| n.after) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => return Err(ReadError(format!("paging.next.after is {other}"))),
    };
    Ok(SearchPage {
        total: raw.total,
        results: raw.results,
        next_after,
    })
}

/// What to do with a window after its first page reported `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowPlan {
    /// Within the cap: page through this window.
    Read,
    /// Too many: query this earlier, shorter window instead (same start); the rest of the
    /// original window follows through [`Window::following`].
    Narrow(Window),
    /// More than 10,000 records share one millisecond: no time window can split them. Read
    /// what the cap allows and raise it to an operator (a bulk import is the usual cause).
    Saturated,
}

/// Decides from the first page's `total` whether `window` can be read as one query. A narrower
/// window is sized in proportion to the overshoot with 10% headroom (records keep arriving while
/// we read) and is at most half the window, so repeated narrowing always converges.
pub fn plan_window(window: Window, total: u64) -> WindowPlan {
    if total <= MAX_RESULTS_PER_QUERY {
        return WindowPlan::Read;
    }
    let len = window.len_ms();
    if len <= 1 {
        return WindowPlan::Saturated;
    }
    let target = MAX_RESULTS_PER_QUERY * 9 / 10;
    let proportional = (i128::from(len) * i128::from(target) / i128::from(total)) as i64;
    let new_len = proportional.clamp(1, len / 2);
    WindowPlan::Narrow(Window {
        start_ms: window.start_ms,
        end_ms: window.start_ms + new_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAY_1: i64 = 1_714_521_600_000; // 2024-05-01T00:00:00Z
    const DAY: i64 = 86_400_000;

    #[test]
    fn deal_search_filters_window_on_hs_lastmodifieddate_ascending() {
        let req = SearchRequest::first_page(
            "deals",
            &["dealname", "amount", "dealstage"],
            Window {
                start_ms: MAY_1,
                end_ms: MAY_1 + DAY,
            },
            500,
        );
        assert_eq!(
            req.body(),
            json!({
                "filterGroups": [{"filters": [
                    {"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "1714521600000"},
                    {"propertyName": "hs_lastmodifieddate", "operator": "LT", "value": "1714608000000"}
                ]}],
                "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
                "properties": ["dealname", "amount", "dealstage", "hs_lastmodifieddate"],
                "limit": 200
            })
        );
        assert_eq!(
            search_path("/crm/v3/objects", "deals"),
            "/crm/v3/objects/deals/search"
        );
    }

    #[test]
    fn contact_search_uses_lastmodifieddate() {
        let req = SearchRequest::first_page(
            "contacts",
            &["email", "lastmodifieddate"],
            Window {
                start_ms: MAY_1,
                end_ms: MAY_1 + 1,
            },
            100,
        );
        let body = req.body();
        assert_eq!(body["sorts"][0]["propertyName"], "lastmodifieddate");
        assert_eq!(
            body["filterGroups"][0]["filters"][1]["propertyName"],
            "lastmodifieddate"
        );
        assert_eq!(body["properties"], json!(["email", "lastmodifieddate"]));
        assert_eq!(body["limit"], 100);
    }

    #[test]
    fn pages_follow_after_until_paging_is_missing() {
        let req = SearchRequest::first_page(
            "contacts",
            &["email"],
            Window {
                start_ms: MAY_1,
                end_ms: MAY_1 + DAY,
            },
            200,
        );
        let page = parse_search_page(
            br#"{"total":201,"results":[{"id":"51","properties":{"email":"maria.lopez@example.test","lastmodifieddate":"2024-05-01T12:00:00.000Z","phone":null},"createdAt":"2024-04-02T09:00:00.000Z","updatedAt":"2024-05-01T12:00:00.000Z","archived":false}],"paging":{"next":{"after":"200"}}}"#,
        )
        .unwrap();
        assert_eq!(page.total, 201);
        assert_eq!(page.results[0].properties["phone"], None);
        let second = req.next(&page).unwrap();
        assert_eq!(second.body()["after"], "200");
        let last = parse_search_page(br#"{"total":201,"results":[]}"#).unwrap();
        assert_eq!(second.next(&last), None);
    }

    #[test]
    fn paging_stops_at_the_ten_thousand_result_cap() {
        let req = SearchRequest::first_page(
            "deals",
            &[],
            Window {
                start_ms: 0,
                end_ms: 1,
            },
            200,
        );
        let page = parse_search_page(
            br#"{"total":12000,"results":[],"paging":{"next":{"after":"10000"}}}"#,
        )
        .unwrap();
        assert_eq!(req.next(&page), None);
    }

    #[test]
    fn malformed_pages_are_errors() {
        assert!(parse_search_page(b"<html>").is_err());
        assert!(parse_search_page(br#"{"total":1}"#).is_err());
        assert!(parse_search_page(br#"{"results":[],"paging":{"next":{"after":{}}}}"#).is_err());
    }

    #[test]
    fn busy_month_of_deals_is_narrowed_below_the_cap() {
        let month = Window {
            start_ms: MAY_1,
            end_ms: MAY_1 + 30 * DAY,
        };
        assert_eq!(plan_window(month, 10_000), WindowPlan::Read);
        match plan_window(month, 45_000) {
            WindowPlan::Narrow(w) => {
                assert_eq!(w.start_ms, MAY_1);
                assert_eq!(w.len_ms(), 6 * DAY);
            }
            other => panic!("{other:?}"),
        }
        let bulk_import = Window {
            start_ms: MAY_1,
            end_ms: MAY_1 + 1,
        };
        assert_eq!(plan_window(bulk_import, 20_000), WindowPlan::Saturated);
    }

    #[test]
    fn following_window_stops_at_the_horizon() {
        let w = Window {
            start_ms: MAY_1,
            end_ms: MAY_1 + DAY,
        };
        assert_eq!(
            w.following(DAY, MAY_1 + DAY + 5_000),
            Some(Window {
                start_ms: MAY_1 + DAY,
                end_ms: MAY_1 + DAY + 5_000
            })
        );
        assert_eq!(w.following(DAY, MAY_1 + DAY), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn narrowing_always_shrinks_within_the_window(start in 0i64..2_000_000_000_000, len in 2i64..(400 * DAY), total in 10_001u64..5_000_000) {
            let w = Window { start_ms: start, end_ms: start + len };
            match plan_window(w, total) {
                WindowPlan::Narrow(n) => {
                    prop_assert_eq!(n.start_ms, w.start_ms);
                    prop_assert!(n.end_ms > n.start_ms && n.end_ms < w.end_ms);
                    prop_assert!(n.len_ms() <= len / 2);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }

        #[test]
        fn hostile_pages_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_search_page(&body);
        }
    }
}
