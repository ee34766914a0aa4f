//! `GET /v1/responses/{id}/input_items` of a response the gateway stored: its input
//! items in OpenAI's list shape, paged as the API pages them (`limit`, `order`,
//! `after`).

use serde_json::{json, Value};

use super::GatewayError;

/// What the client asked of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Items on the page: 1 to 100, 20 unless asked.
    limit: usize,
    /// Oldest first (`order=asc`); the API's default is newest first.
    ascending: bool,
    /// The page starts after the item with this id.
    after: Option<String>,
}

impl ListQuery {
    /// Reads `query` (raw, percent-encoded); members it does not know are ignored
    /// (`include` asks for details a stored item already has or never had).
    pub fn parse(query: Option<&str>) -> Result<Self, GatewayError> {
        let mut list = ListQuery {
            limit: 20,
            ascending: false,
            after: None,
        };
        for pair in query.unwrap_or_default().split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
            match name {
                "limit" => {
                    list.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| {
                            GatewayError::invalid_request(format!(
                                "Invalid 'limit': {value}. Expected an integer between 1 and 100."
                            ))
                            .with_param("limit")
                        })?;
                }
                "order" => {
                    list.ascending = match &*value {
                        "asc" => true,
                        "desc" => false,
                        _ => {
                            return Err(GatewayError::invalid_request(format!(
                                "Invalid 'order': {value}. Expected 'asc' or 'desc'."
                            ))
                            .with_param("order"))
                        }
                    }
                }
                "after" => list.after = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(list)
    }
}

/// The page `query` asks for of `items` (the stored JSON array) of response
/// `response_id`. An item stored without an id (the client gave none) is given one
/// made of the response's id and its place, the same at every read, so that `after`
/// can name it.
pub fn list_body(
    response_id: &str,
    items: &[u8],
    query: &ListQuery,
) -> Result<Vec<u8>, GatewayError> {
    let mut items: Vec<Value> = serde_json::from_slice(items).map_err(|_| {
        GatewayError::bad_gateway(format!("stored response `{response_id}` cannot be read"))
    })?;
    for (i, item) in items.iter_mut().enumerate() {
        if let Some(object) = item.as_object_mut() {
            object
                .entry("id")
                .or_insert_with(|| Value::from(format!("{response_id}_input_{i}")));
        }
    }
    if !query.ascending {
        items.reverse();
    }
    let id_of = |item: &Value| item.get("id").and_then(Value::as_str).map(str::to_string);
    let start = match &query.after {
        Some(after) => items
            .iter()
            .position(|item| id_of(item).as_deref() == Some(after.as_str()))
            .map_or(items.len(), |at| at + 1),
        None => 0,
    };
    let rest = &items[start.min(items.len())..];
    let page = &rest[..query.limit.min(rest.len())];
    let body = json!({
        "object": "list",
        "data": page,
        "first_id": page.first().and_then(id_of),
        "last_id": page.last().and_then(id_of),
        "has_more": rest.len() > page.len(),
    });
    Ok(body.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ITEMS: &str = r#"[{"type":"message","role":"user","content":"a"},{"id":"fc_1","type":"function_call_output","call_id":"c","output":"b"},{"type":"message","role":"user","content":"c"}]"#;

    fn page(query: &str) -> Value {
        let query = ListQuery::parse(Some(query)).unwrap();
        serde_json::from_slice(&list_body("resp_1", ITEMS.as_bytes(), &query).unwrap()).unwrap()
    }

    #[test]
    fn input_items_list_newest_first_with_ids_for_those_stored_without() {
        let list = page("");
        assert_eq!(list["object"], "list");
        let ids: Vec<&str> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["resp_1_input_2", "fc_1", "resp_1_input_0"]);
        assert_eq!(list["first_id"], "resp_1_input_2");
        assert_eq!(list["last_id"], "resp_1_input_0");
        assert_eq!(list["has_more"], false);
    }

    #[test]
    fn input_items_page_by_limit_order_and_after() {
        let list = page("order=asc&limit=1");
        assert_eq!(list["data"][0]["content"], "a");
        assert_eq!(list["has_more"], true);
        let list = page("order=asc&after=resp_1_input_0&limit=1");
        assert_eq!(list["data"][0]["id"], "fc_1");
        assert_eq!(list["has_more"], true);
        let list = page("after=resp_1_input_0");
        assert_eq!(list["data"], json!([]));
        assert_eq!(list["first_id"], Value::Null);
    }

    #[test]
    fn a_limit_or_order_the_api_refuses_is_refused() {
        for query in ["limit=0", "limit=101", "limit=x", "order=up"] {
            let err = ListQuery::parse(Some(query)).unwrap_err();
            assert_eq!(err.status, 400, "{query}");
        }
    }
}
