use super::*;

const ID: &[u8] = b"0190b2a4-6c5e-7a4e-9a51-0c7c8b4c2a10";

/// The envelope of a record carrying the headers `written` (topic `t`, key `k`, payload `{}`).
fn read_back(written: &[(&'static str, String)]) -> Envelope {
    Envelope::from_record(
        "t",
        Some(b"k"),
        written.iter().map(|(k, v)| (*k, v.as_bytes())),
        b"{}",
    )
    .unwrap()
}

fn required() -> Vec<(&'static str, &'static [u8])> {
    vec![
        (headers::SPEC_VERSION, b"1.0"),
        (headers::ID, ID),
        (headers::SOURCE, b"petstore"),
        (headers::TYPE, b"petstore.order.order_placed"),
        (headers::TIME, b"2026-01-01T00:00:00Z"),
        (headers::SCHEMA_VERSION, b"2"),
        (headers::CATEGORY, b"domain"),
    ]
}

fn raw<'a>(pairs: &[(&str, &'a [u8])]) -> RawAttributes<'a> {
    RawAttributes::read(pairs.iter().copied())
}

#[test]
fn the_written_time_keeps_its_nanoseconds_and_the_version_its_digits() {
    let mut envelope = Envelope::from_record("t", Some(b"k"), required(), b"{}").unwrap();
    envelope.time =
        time::OffsetDateTime::from_unix_timestamp_nanos(1_764_844_800_123_456_789).unwrap();
    envelope.version = 4_000_000_000;
    let written = envelope.headers();
    let header = |name| written.iter().find(|(k, _)| *k == name).unwrap().1.clone();
    assert_eq!(header(headers::TIME), "2025-12-04T10:40:00.123456789Z");
    assert_eq!(header(headers::SCHEMA_VERSION), "4000000000");
    assert_eq!(read_back(&written), envelope);
}

#[test]
fn a_complete_record_decodes() {
    let mut pairs = required();
    pairs.push((headers::TENANT_ID, b"acme"));
    pairs.push((headers::TAGS, b"blue,,red"));
    let envelope = Envelope::from_record("t", Some(b"k"), pairs.clone(), b"{}").unwrap();
    assert_eq!(envelope.id.to_string().as_bytes(), ID);
    assert_eq!((envelope.version, envelope.category), (2, Category::Domain));
    assert_eq!(envelope.tags, ["blue", "red"]);
    assert_eq!(envelope.content_type, JSON, "content-type defaults to JSON");
    let attributes = raw(&pairs).check().unwrap();
    assert_eq!(attributes.event_type, "petstore.order.order_placed");
    assert_eq!(attributes.tenant_id, Some("acme"));
    // What an envelope writes reads back the same.
    let written = envelope.headers();
    assert_eq!(read_back(&written), envelope);
}

#[test]
fn only_the_attributes_cloudevents_requires_are_required() {
    let minimal: Vec<(&str, &[u8])> = required()
        .into_iter()
        .filter(|(n, _)| {
            [
                headers::SPEC_VERSION,
                headers::ID,
                headers::SOURCE,
                headers::TYPE,
            ]
            .contains(n)
        })
        .collect();
    let before = OffsetDateTime::now_utc();
    let envelope = Envelope::from_record("t", None, minimal.clone(), b"{}").unwrap();
    assert_eq!(envelope.category, Category::Integration);
    assert_eq!(envelope.version, 1);
    assert!(envelope.time >= before, "no ce_time: the time it was read");
    let attributes = raw(&minimal).check().unwrap();
    assert_eq!(
        (attributes.time, attributes.category, attributes.version),
        (None, None, None)
    );
    for name in [
        headers::SPEC_VERSION,
        headers::ID,
        headers::SOURCE,
        headers::TYPE,
    ] {
        let pairs: Vec<_> = minimal
            .iter()
            .copied()
            .filter(|(n, _)| *n != name)
            .collect();
        let error = raw(&pairs).check().unwrap_err();
        assert!(error.to_string().contains(name), "{name}: {error}");
    }
}

#[test]
fn bad_values_are_named() {
    let cases: [(&str, &[u8], &str); 9] = [
        (headers::SPEC_VERSION, b"0.3", "unsupported version"),
        (headers::ID, b"not-a-uuid", "is not a UUID"),
        (headers::ID, b"", "empty"),
        (headers::SOURCE, b"", "empty"),
        (headers::TIME, b"yesterday", "RFC 3339"),
        (headers::SCHEMA_VERSION, b"two", "not a number"),
        (headers::SCHEMA_VERSION, b"0", "not a number from 1"),
        (headers::CATEGORY, b"gossip", "unknown category"),
        (headers::SUBJECT, &[0xff], "UTF-8"),
    ];
    for (name, value, expected) in cases {
        let mut pairs = required();
        pairs.retain(|(n, _)| *n != name);
        pairs.push((name, value));
        let error = raw(&pairs).check().unwrap_err();
        assert!(error.to_string().contains(expected), "{name}: {error}");
        assert!(error.to_string().contains(name), "{name}: {error}");
        let again = Envelope::from_record("t", None, pairs, b"{}").unwrap_err();
        assert_eq!(again.to_string(), error.to_string(), "one validation");
    }
    let error = Envelope::from_record("t", Some(&[0xff, 0xfe]), required(), b"{}").unwrap_err();
    assert!(error.to_string().contains("key"), "{error}");
    // Headers of other names are not ours to read: binary ones are fine.
    let mut binary = required();
    binary.push(("x-trace-bin", &[0xff, 0x00]));
    assert!(Envelope::from_record("t", None, binary, b"{}").is_ok());
    // An empty optional attribute (CloudEvents forbids them) reads as absent.
    let mut empty = required();
    empty.push((headers::SUBJECT, b""));
    let envelope = Envelope::from_record("t", None, empty, b"{}").unwrap();
    assert_eq!(envelope.subject, None);
    assert!(
        !envelope
            .headers()
            .iter()
            .any(|(n, _)| *n == headers::SUBJECT)
    );
}

#[test]
fn the_fast_readings_take_the_written_forms_only() {
    for c in Category::ALL {
        assert_eq!(category_of(c.as_str().as_bytes()), Some(c));
    }
    assert_eq!(category_of(b"Domain"), None);
    assert_eq!(small_number(b"1"), Some(1));
    assert_eq!(small_number(b"007"), Some(7));
    for other in [&b""[..], b"0", b"+1", b"1234567890", b"1 "] {
        assert_eq!(small_number(other), None, "{other:?}");
    }
    let at = |t: &str| utc_time(t.as_bytes());
    assert_eq!(
        at("2026-12-04T10:40:00.123456789Z"),
        Some(OffsetDateTime::from_unix_timestamp_nanos(1_796_380_800_123_456_789).unwrap())
    );
    assert_eq!(
        at("2026-12-04T10:40:00.5Z").map(OffsetDateTime::nanosecond),
        Some(500_000_000)
    );
    // Left to the general parser: another offset, a leap second, a bad date, ten digits.
    for t in [
        "2026-12-04T10:40:00+01:00",
        "2026-12-31T23:59:60Z",
        "2026-02-30T10:40:00Z",
        "2026-12-04T10:40:00.1234567890Z",
        "2026-12-04 10:40:00Z",
    ] {
        assert_eq!(at(t), None, "{t}");
    }
}

#[test]
fn json_is_the_default_and_any_json_type() {
    let with = |t: Option<&'static [u8]>| {
        let mut pairs = required();
        if let Some(t) = t {
            pairs.push((headers::CONTENT_TYPE, t));
        }
        RawAttributes::read(pairs).check().unwrap().is_json()
    };
    assert!(with(None));
    assert!(with(Some(b"application/json")));
    assert!(with(Some(b"application/json; charset=utf-8")));
    assert!(with(Some(b"application/cloudevents+json")));
    assert!(!with(Some(b"application/avro")));
    assert!(!with(Some(b"text/plain")));
}

mod fuzz {
    //! Property tests: arbitrary headers, keys and payloads never panic the decoder, and the
    //! consumer's check and `Envelope::from_record` give one verdict.
    //! `PROPTEST_CASES=100000 cargo test -p eventbus --lib fuzz` runs longer.

    use proptest::prelude::*;

    use super::*;

    /// A header name: one of ours, or anything.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => proptest::sample::select(vec![
                headers::SPEC_VERSION, headers::ID, headers::SOURCE, headers::TYPE,
                headers::TIME, headers::SUBJECT, headers::CONTENT_TYPE, headers::CATEGORY,
                headers::SCHEMA_VERSION, headers::CORRELATION_ID, headers::CAUSATION_ID,
                headers::TRACEPARENT, headers::TRACESTATE, headers::TENANT_ID, headers::TAGS,
            ])
            .prop_map(str::to_owned),
            1 => "[a-z_-]{0,12}",
        ]
    }

    /// A value: a plausible one, a near miss, or any bytes.
    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::sample::select(vec![
                "1.0",
                "0.3",
                "",
                "0190b2a4-6c5e-7a4e-9a51-0c7c8b4c2a10",
                "not-a-uuid",
                "2026-01-01T00:00:00Z",
                "2026-13-01T00:00:00Z",
                "2026-01-01T00:00:00.123+02:00",
                "domain",
                "integration",
                "gossip",
                "1",
                "0",
                "2",
                "-1",
                "4294967296",
                "application/json",
                "application/cloudevents+json; charset=utf-8",
                "text/plain",
                "a,b,,c",
                "petstore.order.order_placed",
            ])
            .prop_map(|v| v.as_bytes().to_vec()),
            "\\PC{0,40}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..40),
        ]
    }

    /// Headers: the required ones mostly present, the rest at random.
    fn record_headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
        let required = proptest::collection::vec(
            (
                proptest::sample::select(vec![
                    headers::SPEC_VERSION,
                    headers::ID,
                    headers::SOURCE,
                    headers::TYPE,
                ]),
                prop_oneof![
                    4 => proptest::sample::select(vec![
                        "1.0", "0190b2a4-6c5e-7a4e-9a51-0c7c8b4c2a10", "petstore",
                        "petstore.order.order_placed",
                    ])
                    .prop_map(|v| v.as_bytes().to_vec()),
                    1 => value(),
                ],
            ),
            0..6,
        );
        let others = proptest::collection::vec((name(), value()), 0..12);
        (required, others).prop_map(|(required, others)| {
            required
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v))
                .chain(others)
                .collect()
        })
    }

    proptest! {
        /// The byte-level readings of the check take only what the general ones read the same.
        #[test]
        fn the_fast_readings_agree_with_the_general_ones(
            t in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,11})?([Zz]|[+-][0-9]{2}:[0-9]{2})?",
            n in "[+-]?[0-9]{0,11}",
            nanos in -62_000_000_000i64..253_000_000_000i64,
            fraction in 0u32..1_000_000_000,
        ) {
            if let Some(fast) = utc_time(t.as_bytes()) {
                prop_assert_eq!(OffsetDateTime::parse(&t, &Rfc3339).ok(), Some(fast), "{}", t);
            }
            if let Some(fast) = small_number(n.as_bytes()) {
                prop_assert_eq!(n.parse::<u32>().ok(), Some(fast), "{}", n);
                prop_assert!(fast > 0);
            }
            // Every time an envelope writes takes the fast reading.
            let time = OffsetDateTime::from_unix_timestamp(nanos).unwrap()
                .replace_nanosecond(fraction).unwrap();
            let written = time.format(&Rfc3339).unwrap();
            prop_assert_eq!(utc_time(written.as_bytes()), Some(time), "{}", written);
        }
    }

    proptest! {
        #[test]
        fn any_record_gets_one_verdict(
            pairs in record_headers(),
            key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..12)),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let iter = || pairs.iter().map(|(n, v)| (n.as_str(), v.as_slice()));
            let checked = RawAttributes::read(iter())
                .check()
                .and_then(|a| key_of(key.as_deref()).map(|k| (a, k)));
            let decoded = Envelope::from_record("t", key.as_deref(), iter(), &payload);
            // Knowing event types changes nothing but the work.
            let knowing = RawAttributes::read(iter())
                .check_knowing(&["petstore.order.order_placed", ""])
                .map(|a| (a.id, a.event_type.to_owned(), a.content_type.map(str::to_owned)))
                .map_err(|e| e.to_string());
            let plain = RawAttributes::read(iter())
                .check()
                .map(|a| (a.id, a.event_type.to_owned(), a.content_type.map(str::to_owned)))
                .map_err(|e| e.to_string());
            prop_assert_eq!(knowing, plain);
            match (&checked, &decoded) {
                (Ok((attributes, _)), Ok(envelope)) => {
                    prop_assert_eq!(attributes.id, envelope.id);
                    prop_assert_eq!(attributes.event_type, &*envelope.event_type);
                    // What an envelope writes reads back as the same envelope.
                    let written = envelope.headers();
                    let again = Envelope::from_record(
                        "t",
                        envelope.key.as_deref().map(str::as_bytes),
                        written.iter().map(|(k, v)| (*k, v.as_bytes())),
                        &payload,
                    );
                    let again = again.ok();
                    prop_assert_eq!(again.as_ref(), Some(envelope));
                }
                (Err(a), Err(b)) => {
                    prop_assert_eq!(a.to_string(), b.to_string());
                    prop_assert!(!a.to_string().is_empty());
                }
                _ => prop_assert!(false, "two verdicts: {:?} / {:?}", checked.is_ok(), decoded.is_ok()),
            }
        }
    }
}
