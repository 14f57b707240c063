//! Case conversion and suggestions.

/// `OrderPlaced` → `order_placed`; `HTTPRequestFailed` → `http_request_failed`.
pub fn to_snake_case(ident: &str) -> String {
    let chars: Vec<char> = ident.trim_start_matches("r#").chars().collect();
    let mut out = String::with_capacity(chars.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let boundary = match prev {
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_uppercase() => next.is_some_and(|n| n.is_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `order_placed` / `order-placed` / `order.placed` → `OrderPlaced`.
pub fn to_pascal_case(name: &str) -> String {
    name.split(['_', '-', '.', ' '])
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// The closest valid topic segment to `value` (lower case, `_` for anything else).
pub fn to_segment(value: &str) -> String {
    let snake = to_snake_case(value);
    snake
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_matches('_')
        .to_owned()
}

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case() {
        assert_eq!(to_snake_case("OrderPlaced"), "order_placed");
        assert_eq!(to_snake_case("HTTPRequestFailed"), "http_request_failed");
        assert_eq!(to_snake_case("Order2Placed"), "order2_placed");
        assert_eq!(to_snake_case("V2Migrated"), "v2_migrated");
        assert_eq!(to_snake_case("r#Type"), "type");
    }

    #[test]
    fn pascal_case() {
        assert_eq!(to_pascal_case("order_placed"), "OrderPlaced");
        assert_eq!(to_pascal_case("order-line"), "OrderLine");
    }

    #[test]
    fn segments_and_suggestions() {
        assert_eq!(to_segment("Order Lines"), "order_lines");
        assert_eq!(
            did_you_mean("agregate", &["aggregate", "version"]),
            Some("aggregate")
        );
        assert_eq!(did_you_mean("zzz", &["aggregate", "version"]), None);
    }
}
