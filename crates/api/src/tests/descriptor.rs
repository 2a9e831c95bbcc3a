//! The published schema itself: reject codes equal the domain's, every element is
//! documented, and there is one RPC per command.

use crate::proto as pb;
use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};
use tradelog_domain as d;

fn fds() -> FileDescriptorSet {
    FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).expect("the embedded set decodes")
}

/// `InsufficientFunds` -> `INSUFFICIENT_FUNDS`.
fn screaming(camel: &str) -> String {
    let mut out = String::new();
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

fn reject_enum(fds: &FileDescriptorSet) -> EnumDescriptorProto {
    fds.file
        .iter()
        .filter(|f| f.package() == "tradelog.v1")
        .flat_map(|f| f.enum_type.iter())
        .find(|e| e.name() == "RejectCode")
        .expect("tradelog.v1.RejectCode exists")
        .clone()
}

#[test]
fn every_domain_reject_code_has_the_same_number_and_name_on_the_wire() {
    for &code in d::RejectCode::ALL {
        let number = i32::from(code.code());
        let wire = pb::RejectCode::try_from(number)
            .unwrap_or_else(|_| panic!("{code:?} ({number}) is missing from the proto enum"));
        let want = format!("REJECT_CODE_{}", screaming(&format!("{code:?}")));
        assert_eq!(wire.as_str_name(), want, "{code:?}");
        assert_eq!(format!("{wire:?}"), format!("{code:?}"));
        assert_eq!(crate::reject_code_to_wire(code), number);
        assert_eq!(crate::reject_code_name(code), want);
    }
}

#[test]
fn every_wire_reject_code_is_a_domain_code_with_the_same_name() {
    let e = reject_enum(&fds());
    let mut count = 0;
    for v in &e.value {
        if v.number() == 0 {
            assert_eq!(v.name(), "REJECT_CODE_UNSPECIFIED");
            continue;
        }
        count += 1;
        let code = u16::try_from(v.number())
            .ok()
            .and_then(d::RejectCode::from_code)
            .unwrap_or_else(|| panic!("{} = {} is not a domain code", v.name(), v.number()));
        assert_eq!(
            v.name(),
            format!("REJECT_CODE_{}", screaming(&format!("{code:?}")))
        );
        // The generated Rust enum agrees with the descriptor.
        let generated = pb::RejectCode::from_str_name(v.name()).expect("generated");
        assert_eq!(generated as i32, v.number());
    }
    assert_eq!(count, d::RejectCode::ALL.len());
}

/// Source locations with a leading comment, by path.
fn documented(file: &prost_types::FileDescriptorProto) -> std::collections::HashSet<Vec<i32>> {
    file.source_code_info
        .as_ref()
        .expect("protox keeps source info")
        .location
        .iter()
        .filter(|l| !l.leading_comments().trim().is_empty())
        .map(|l| l.path.clone())
        .collect()
}

fn check_enum(
    e: &EnumDescriptorProto,
    path: Vec<i32>,
    docs: &std::collections::HashSet<Vec<i32>>,
    missing: &mut Vec<String>,
) {
    if !docs.contains(&path) {
        missing.push(format!("enum {}", e.name()));
    }
    for (i, v) in e.value.iter().enumerate() {
        let mut p = path.clone();
        p.extend([2, i as i32]);
        if !docs.contains(&p) {
            missing.push(format!("enum value {}", v.name()));
        }
    }
}

fn check_message(
    m: &DescriptorProto,
    path: Vec<i32>,
    docs: &std::collections::HashSet<Vec<i32>>,
    missing: &mut Vec<String>,
) {
    if !docs.contains(&path) {
        missing.push(format!("message {}", m.name()));
    }
    for (i, f) in m.field.iter().enumerate() {
        let mut p = path.clone();
        p.extend([2, i as i32]);
        if !docs.contains(&p) {
            missing.push(format!("field {}.{}", m.name(), f.name()));
        }
    }
    for (i, n) in m.nested_type.iter().enumerate() {
        let mut p = path.clone();
        p.extend([3, i as i32]);
        check_message(n, p, docs, missing);
    }
    for (i, e) in m.enum_type.iter().enumerate() {
        let mut p = path.clone();
        p.extend([4, i as i32]);
        check_enum(e, p, docs, missing);
    }
    for (i, o) in m.oneof_decl.iter().enumerate() {
        let mut p = path.clone();
        p.extend([8, i as i32]);
        // proto3 `optional` fields are synthetic oneofs named `_field`: no doc of their own.
        if !o.name().starts_with('_') && !docs.contains(&p) {
            missing.push(format!("oneof {}.{}", m.name(), o.name()));
        }
    }
}

#[test]
fn every_message_field_enum_value_and_rpc_is_documented() {
    let mut missing = Vec::new();
    for file in fds().file.iter().filter(|f| f.package() == "tradelog.v1") {
        let docs = documented(file);
        for (i, m) in file.message_type.iter().enumerate() {
            check_message(m, vec![4, i as i32], &docs, &mut missing);
        }
        for (i, e) in file.enum_type.iter().enumerate() {
            check_enum(e, vec![5, i as i32], &docs, &mut missing);
        }
        for (i, s) in file.service.iter().enumerate() {
            if !docs.contains(&vec![6, i as i32]) {
                missing.push(format!("service {}", s.name()));
            }
            for (j, m) in s.method.iter().enumerate() {
                if !docs.contains(&vec![6, i as i32, 2, j as i32]) {
                    missing.push(format!("rpc {}", m.name()));
                }
            }
        }
    }
    assert!(missing.is_empty(), "undocumented: {missing:#?}");
}

/// `create_asset` -> `CreateAsset`.
fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn one_unary_rpc_per_command_taking_its_request() {
    let fds = fds();
    let files: Vec<_> = fds
        .file
        .iter()
        .filter(|f| f.package() == "tradelog.v1")
        .collect();
    let command = files
        .iter()
        .flat_map(|f| f.message_type.iter())
        .find(|m| m.name() == "Command")
        .expect("Command message");
    let service = files
        .iter()
        .flat_map(|f| f.service.iter())
        .find(|s| s.name() == "Tradelog")
        .expect("Tradelog service");
    assert_eq!(command.field.len(), super::strategies::COMMAND_VARIANTS);
    for f in &command.field {
        let rpc = camel(f.name());
        let m = service
            .method
            .iter()
            .find(|m| m.name() == rpc)
            .unwrap_or_else(|| panic!("no rpc {rpc} for Command.{}", f.name()));
        assert_eq!(m.input_type(), f.type_name(), "rpc {rpc}");
        assert_eq!(m.output_type(), ".tradelog.v1.CommandResponse", "rpc {rpc}");
        assert!(!m.client_streaming() && !m.server_streaming(), "rpc {rpc}");
    }
    let subscribe = service
        .method
        .iter()
        .find(|m| m.name() == "SubscribeEvents")
        .expect("SubscribeEvents");
    assert!(subscribe.server_streaming() && !subscribe.client_streaming());
    for rpc in [
        "SubmitBatch",
        "GetBalances",
        "GetBalanceHistory",
        "GetOrder",
        "GetBook",
        "GetCatalog",
        "ReadEvents",
        "GetTrades",
        "GetCandles",
        "GetOpenOrders",
        "GetStatement",
    ] {
        assert!(
            service.method.iter().any(|m| m.name() == rpc),
            "missing rpc {rpc}"
        );
    }
}

#[test]
fn event_oneof_has_one_field_per_domain_event() {
    let fds = fds();
    let event = fds
        .file
        .iter()
        .flat_map(|f| f.message_type.iter())
        .find(|m| m.name() == "Event")
        .expect("Event message");
    assert_eq!(event.field.len(), super::strategies::EVENT_VARIANTS);
}
