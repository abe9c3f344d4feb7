use super::write::{escape_into, escaped_len, estimate};
use super::*;
use proptest::prelude::*;

fn call(body: &str) -> MethodCall {
    match parse_call(body.as_bytes(), &Limits::default()) {
        Ok(c) => c,
        Err(e) => panic!("{e}\nbody: {body}"),
    }
}

fn call_err(body: &str) -> String {
    match parse_call(body.as_bytes(), &Limits::default()) {
        Ok(c) => panic!("accepted {c:?}\nbody: {body}"),
        Err(e) => e.to_string(),
    }
}

/// A call with one parameter whose `<value>` element is `value`.
fn one_param(value: &str) -> Value {
    let body = format!(
        "<methodCall><methodName>m</methodName><params><param>{value}</param></params></methodCall>"
    );
    let mut c = call(&body);
    assert_eq!(c.params.len(), 1, "{body}");
    c.params.remove(0)
}

fn one_param_err(value: &str) -> String {
    call_err(&format!(
        "<methodCall><methodName>m</methodName><params><param>{value}</param></params></methodCall>"
    ))
}

fn s(x: &str) -> Value {
    Value::String(x.to_owned())
}

#[track_caller]
fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "{haystack:?} does not contain {needle:?}"
    );
}

// ---- What real clients send ----

/// Byte for byte what pyone (Python's xmlrpc.client) posts for `one.vm.info(3, False)`.
#[test]
fn pyone_body() {
    let body = "<?xml version='1.0'?>\n<methodCall>\n<methodName>one.vm.info</methodName>\n\
                <params>\n<param>\n<value><string>oneadmin:opennebula</string></value>\n</param>\n\
                <param>\n<value><int>3</int></value>\n</param>\n\
                <param>\n<value><boolean>0</boolean></value>\n</param>\n</params>\n</methodCall>\n";
    assert_eq!(
        call(body),
        MethodCall {
            method: "one.vm.info".into(),
            params: vec![s("oneadmin:opennebula"), Value::Int(3), Value::Bool(false)],
        }
    );
}

/// pyone's struct and array layout (newline after each member and item).
#[test]
fn pyone_struct_and_array_layout() {
    let body = "<?xml version='1.0'?>\n<methodCall>\n<methodName>x</methodName>\n<params>\n\
                <param>\n<value><struct>\n<member>\n<name>A</name>\n<value><int>1</int></value>\n\
                </member>\n</struct></value>\n</param>\n<param>\n<value><array><data>\n\
                <value><string>a</string></value>\n<value><int>2</int></value>\n\
                </data></array></value>\n</param>\n</params>\n</methodCall>\n";
    assert_eq!(
        call(body).params,
        vec![
            Value::Struct(vec![("A".into(), Value::Int(1))]),
            Value::Array(vec![s("a"), Value::Int(2)]),
        ]
    );
}

/// A nested-dict template from pyone: XML with CDATA, escaped once more as an XML-RPC string.
#[test]
fn pyone_nested_template_string() {
    let v = one_param(
        "<value><string>&lt;TEMPLATE&gt;&lt;DISK&gt;&lt;IMAGE_ID&gt;&lt;![CDATA[3]]&gt;\
         &lt;/IMAGE_ID&gt;&lt;/DISK&gt;&lt;/TEMPLATE&gt;</string></value>",
    );
    assert_eq!(
        v,
        s("<TEMPLATE><DISK><IMAGE_ID><![CDATA[3]]></IMAGE_ID></DISK></TEMPLATE>")
    );
}

/// Byte for byte what the Ruby OCA (xmlrpc gem) posts: `<i4>`, no whitespace.
#[test]
fn ruby_oca_body() {
    let body = "<?xml version=\"1.0\" ?><methodCall><methodName>one.vm.action</methodName>\
                <params><param><value><string>oneadmin:opennebula</string></value></param>\
                <param><value><string>terminate-hard</string></value></param>\
                <param><value><i4>42</i4></value></param></params></methodCall>\n";
    assert_eq!(
        call(body),
        MethodCall {
            method: "one.vm.action".into(),
            params: vec![
                s("oneadmin:opennebula"),
                s("terminate-hard"),
                Value::Int(42)
            ],
        }
    );
}

#[test]
fn declaration_with_encoding_and_bom() {
    let body = "\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<methodCall>\r\n\
                <methodName>one.system.version</methodName>\r\n</methodCall>\r\n";
    assert_eq!(call(body).method, "one.system.version");
}

#[test]
fn no_declaration() {
    assert_eq!(
        call("<methodCall><methodName>m</methodName></methodCall>").method,
        "m"
    );
}

#[test]
fn params_forms() {
    for body in [
        "<methodCall><methodName>m</methodName></methodCall>",
        "<methodCall><methodName>m</methodName><params/></methodCall>",
        "<methodCall><methodName>m</methodName><params></params></methodCall>",
        "<methodCall>\n  <methodName>m</methodName>\n  <params>\n  </params>\n</methodCall>",
    ] {
        assert_eq!(call(body).params, vec![], "{body}");
    }
}

#[test]
fn method_name_is_trimmed() {
    assert_eq!(
        call("<methodCall><methodName>\n one.vm.info \n</methodName></methodCall>").method,
        "one.vm.info"
    );
}

#[test]
fn integers() {
    assert_eq!(one_param("<value><int>7</int></value>"), Value::Int(7));
    assert_eq!(one_param("<value><i4>-7</i4></value>"), Value::Int(-7));
    assert_eq!(one_param("<value><int>+7</int></value>"), Value::Int(7));
    assert_eq!(one_param("<value><int> 7\n</int></value>"), Value::Int(7));
    assert_eq!(
        one_param("<value><i8>9223372036854775807</i8></value>"),
        Value::Int(i64::MAX)
    );
    assert_eq!(
        one_param("<value><i8>-9223372036854775808</i8></value>"),
        Value::Int(i64::MIN)
    );
    // goca writes `<int>` for int64 values, so wide values in `<int>` are accepted too.
    assert_eq!(
        one_param("<value><int>4294967296</int></value>"),
        Value::Int(1 << 32)
    );
}

#[test]
fn namespaced_types() {
    let body = "<?xml version=\"1.0\"?><methodCall \
                xmlns:ex=\"http://ws.apache.org/xmlrpc/namespaces/extensions\">\
                <methodName>m</methodName><params>\
                <param><value><ex:i8>5000000000</ex:i8></value></param>\
                <param><value><ex:nil/></value></param></params></methodCall>";
    assert_eq!(
        call(body).params,
        vec![Value::Int(5_000_000_000), Value::Nil]
    );
}

#[test]
fn booleans() {
    for (text, b) in [
        ("1", true),
        ("0", false),
        ("true", true),
        ("false", false),
        ("TRUE", true),
        (" 1 ", true),
    ] {
        assert_eq!(
            one_param(&format!("<value><boolean>{text}</boolean></value>")),
            Value::Bool(b),
            "{text}"
        );
    }
}

#[test]
fn strings() {
    assert_eq!(one_param("<value><string>a b</string></value>"), s("a b"));
    assert_eq!(one_param("<value><string>  </string></value>"), s("  "));
    assert_eq!(one_param("<value><string></string></value>"), s(""));
    assert_eq!(one_param("<value><string/></value>"), s(""));
    assert_eq!(
        one_param("<value><string>é ü 日本 🚀</string></value>"),
        s("é ü 日本 🚀")
    );
    assert_eq!(
        one_param("<value><string>\"quoted\" 'x'</string></value>"),
        s("\"quoted\" 'x'")
    );
}

#[test]
fn untyped_values_are_strings_with_whitespace() {
    assert_eq!(one_param("<value>abc</value>"), s("abc"));
    assert_eq!(one_param("<value>  a b \n</value>"), s("  a b \n"));
    assert_eq!(one_param("<value>   </value>"), s("   "));
    assert_eq!(one_param("<value/>"), s(""));
    assert_eq!(one_param("<value></value>"), s(""));
    assert_eq!(one_param("<value>a&amp;b</value>"), s("a&b"));
}

#[test]
fn whitespace_around_typed_value() {
    assert_eq!(
        one_param("<value>\n  <int>5</int>\n</value>"),
        Value::Int(5)
    );
    assert_eq!(
        one_param("<value>\r\n\t<string> x </string>\r\n</value>"),
        s(" x ")
    );
}

#[test]
fn doubles() {
    assert_eq!(
        one_param("<value><double>1.5</double></value>"),
        Value::Double(1.5)
    );
    assert_eq!(
        one_param("<value><double>-0.25</double></value>"),
        Value::Double(-0.25)
    );
    assert_eq!(
        one_param("<value><double> 3 </double></value>"),
        Value::Double(3.0)
    );
    assert_eq!(
        one_param("<value><double>1e3</double></value>"),
        Value::Double(1000.0)
    );
}

#[test]
fn base64_with_whitespace() {
    assert_eq!(
        one_param("<value><base64>aGVs\n bG8g\r\n\td29y bGQ=</base64></value>"),
        Value::Base64(b"hello world".to_vec())
    );
    // Padding is optional.
    assert_eq!(
        one_param("<value><base64>aGk</base64></value>"),
        Value::Base64(b"hi".to_vec())
    );
    assert_eq!(one_param("<value><base64/></value>"), Value::Base64(vec![]));
}

#[test]
fn date_time() {
    assert_eq!(
        one_param("<value><dateTime.iso8601>20240102T03:04:05</dateTime.iso8601></value>"),
        Value::DateTime("20240102T03:04:05".into())
    );
}

#[test]
fn nil() {
    assert_eq!(one_param("<value><nil/></value>"), Value::Nil);
    assert_eq!(one_param("<value><nil></nil></value>"), Value::Nil);
}

#[test]
fn arrays() {
    assert_eq!(
        one_param(
            "<value><array><data><value><i4>1</i4></value><value>x</value></data></array></value>"
        ),
        Value::Array(vec![Value::Int(1), s("x")])
    );
    for empty in [
        "<value><array><data/></array></value>",
        "<value><array><data></data></array></value>",
        "<value><array>\n<data>\n</data>\n</array></value>",
        "<value><array/></value>",
    ] {
        assert_eq!(one_param(empty), Value::Array(vec![]), "{empty}");
    }
    assert_eq!(
        one_param(
            "<value><array><data><value><array><data><value><array><data>\
             <value><int>3</int></value></data></array></value></data></array></value>\
             <value/></data></array></value>"
        ),
        Value::Array(vec![
            Value::Array(vec![Value::Array(vec![Value::Int(3)])]),
            s("")
        ])
    );
}

#[test]
fn structs() {
    assert_eq!(
        one_param(
            "<value><struct>\n<member>\n<name>a</name>\n<value><int>1</int></value>\n</member>\
             <member><name>b c</name><value><struct><member><name>in</name><value>x</value>\
             </member></struct></value></member><member><name></name><value/></member>\
             </struct></value>"
        ),
        Value::Struct(vec![
            ("a".into(), Value::Int(1)),
            ("b c".into(), Value::Struct(vec![("in".into(), s("x"))])),
            (String::new(), s("")),
        ])
    );
    assert_eq!(one_param("<value><struct/></value>"), Value::Struct(vec![]));
    assert_eq!(
        one_param("<value><struct></struct></value>"),
        Value::Struct(vec![])
    );
}

#[test]
fn cdata() {
    assert_eq!(
        one_param("<value><string><![CDATA[<a>&amp;</a>]]></string></value>"),
        s("<a>&amp;</a>")
    );
    assert_eq!(
        one_param("<value>x<![CDATA[ <y> ]]>z</value>"),
        s("x <y> z")
    );
    assert_eq!(
        one_param("<value><string><![CDATA[]]></string></value>"),
        s("")
    );
}

#[test]
fn character_and_entity_references() {
    assert_eq!(
        one_param(
            "<value><string>&lt;&#60;&#x3C;&#x3c;&gt;&amp;&quot;&apos;&#233;&#x1F680;</string></value>"
        ),
        s("<<<<>&\"'é🚀")
    );
    assert_eq!(
        one_param("<value><int>&#52;2</int></value>"),
        Value::Int(42)
    );
}

#[test]
fn comments_and_processing_instructions_are_ignored() {
    let body = "<?xml version=\"1.0\"?><!-- c --><methodCall><!-- c --><methodName>m</methodName>\
                <params><?pi x?><param><value><string>a<!-- c -->b</string></value></param>\
                </params></methodCall><!-- c -->";
    assert_eq!(call(body).params, vec![s("ab")]);
}

#[test]
fn line_ends_are_normalised_but_char_ref_cr_is_kept() {
    assert_eq!(
        one_param("<value><string>a\r\nb\rc</string></value>"),
        s("a\nb\nc")
    );
    assert_eq!(
        one_param("<value><string>a&#13;\nb</string></value>"),
        s("a\r\nb")
    );
}

// ---- Malformed input ----

#[test]
fn malformed_structure() {
    let cases: &[(&str, &str)] = &[
        ("", "expected <methodCall>, found end of input"),
        ("   \n", "expected <methodCall>, found end of input"),
        ("hello", "unexpected text \"hello\" outside a value"),
        (
            "<methodResponse/>",
            "expected <methodCall>, found <methodResponse>",
        ),
        (
            "<methodCall></methodCall>",
            "expected <methodName>, found </methodCall>",
        ),
        (
            "<methodCall><methodName> </methodName></methodCall>",
            "empty <methodName>",
        ),
        (
            "<methodCall><methodName>m</methodName>",
            "expected <params> or </methodCall>, found end of input",
        ),
        ("<methodCall><methodName>m</methodCall>", "methodName"),
        (
            "<methodCall><methodName>m</methodName><params><param></param></params></methodCall>",
            "expected <value>, found </param>",
        ),
        (
            "<methodCall><methodName>m</methodName><params>junk<param/></params></methodCall>",
            "unexpected text \"junk\" outside a value",
        ),
        (
            "<methodCall><methodName>m</methodName><params><value>1</value></params></methodCall>",
            "expected <param> or </params>, found <value>",
        ),
        (
            "<methodCall><methodName>m</methodName></methodCall>trailing",
            "unexpected text \"trailing\"",
        ),
        (
            "<methodCall><methodName>m</methodName></methodCall><methodCall/>",
            "trailing content after </methodCall>: <methodCall>",
        ),
        (
            "<!DOCTYPE x [<!ENTITY a \"b\">]><methodCall><methodName>m</methodName></methodCall>",
            "DOCTYPE is not allowed",
        ),
        (
            "<methodCall><?xml version=\"1.0\"?><methodName>m</methodName></methodCall>",
            "XML declaration inside the document",
        ),
        (
            "<methodCall><methodName a=>m</methodName></methodCall>",
            "bad attribute",
        ),
        (
            "<methodCall><methodName>m&bogus;</methodName></methodCall>",
            "unknown entity &bogus;",
        ),
        (
            "<methodCall><methodName>m&#0;</methodName></methodCall>",
            "bad character reference",
        ),
        (
            "<methodCall><methodName>m&#xZZ;</methodName></methodCall>",
            "bad character reference",
        ),
        (
            "<methodCall><methodName>m & n</methodName></methodCall>",
            "malformed XML-RPC",
        ),
        (
            "<methodCall><methodName>m</methodName><params><param><value><int>1</int></value>",
            "found end of input",
        ),
    ];
    for (body, needle) in cases {
        let e = call_err(body);
        assert_contains(&e, needle);
        assert_contains(&e, "malformed XML-RPC");
    }
}

#[test]
fn malformed_values() {
    let cases: &[(&str, &str)] = &[
        (
            "<value><float>1</float></value>",
            "unknown value type <float>",
        ),
        (
            "<value><ex:float>1</ex:float></value>",
            "unknown value type <float>",
        ),
        (
            "<value><int>9223372036854775808</int></value>",
            "integer \"9223372036854775808\" out of range",
        ),
        (
            "<value><i4>-9223372036854775809</i4></value>",
            "out of range",
        ),
        ("<value><int>abc</int></value>", "bad integer \"abc\""),
        ("<value><int></int></value>", "bad integer \"\""),
        ("<value><int>1.5</int></value>", "bad integer"),
        ("<value><boolean>2</boolean></value>", "bad boolean \"2\""),
        ("<value><boolean/></value>", "bad boolean"),
        ("<value><double>x</double></value>", "bad double \"x\""),
        ("<value><base64>!!!!</base64></value>", "bad base64"),
        ("<value><base64>a</base64></value>", "bad base64"),
        ("<value><nil>x</nil></value>", "<nil/> with content \"x\""),
        (
            "<value>a<int>1</int></value>",
            "text \"a\" mixed with <int>",
        ),
        (
            "<value><string><b>x</b></string></value>",
            "expected text or </string>, found <b>",
        ),
        (
            "<value><int>1</int><int>2</int></value>",
            "expected </value>, found <int>",
        ),
        ("<value><int>1</int>x</value>", "unexpected text \"x\""),
        (
            "<value><params/></value>",
            "unexpected <params> inside <value>",
        ),
        (
            "<value><array><value/></array></value>",
            "expected <data>, found <value>",
        ),
        (
            "<value><array><data>x</data></array></value>",
            "unexpected text \"x\"",
        ),
        (
            "<value><array><data><int>1</int></data></array></value>",
            "expected <value> or </data> in an array, found <int>",
        ),
        (
            "<value><struct><value/></struct></value>",
            "expected <member> or </struct>, found <value>",
        ),
        (
            "<value><struct><member><value/></member></struct></value>",
            "expected <name>, found <value>",
        ),
        (
            "<value><struct><member><name>a</name></member></struct></value>",
            "expected <value>, found </member>",
        ),
        (
            "<value><struct><member><name>a</name><value/><value/></member></struct></value>",
            "expected </member>, found <value>",
        ),
    ];
    for (value, needle) in cases {
        let e = one_param_err(value);
        assert_contains(&e, needle);
    }
}

#[test]
fn mismatched_end_tag() {
    let e = call_err(
        "<methodCall><methodName>m</methodName><params><param><value><int>1</i4></value></param></params></methodCall>",
    );
    assert_contains(&e, "malformed XML-RPC");
    assert_contains(&e, "at byte");
}

#[test]
fn error_reports_position() {
    let e = one_param_err("<value><int>x</int></value>");
    assert_contains(&e, "(at byte ");
    // XML spells hexadecimal references with a lower-case x only.
    let e = one_param_err("<value>&#X3C;</value>");
    assert_contains(&e, "(at byte ");
}

#[test]
fn invalid_utf8() {
    let mut body = b"<methodCall><methodName>m".to_vec();
    body.extend_from_slice(&[0xFF, 0xFE]);
    body.extend_from_slice(b"</methodName></methodCall>");
    let e = parse_call(&body, &Limits::default()).unwrap_err();
    assert_eq!(
        e,
        XmlRpcError::Malformed("body is not valid UTF-8 (at byte 25)".into())
    );
}

#[test]
fn too_large() {
    let body = "<methodCall><methodName>m</methodName></methodCall>";
    let limits = Limits {
        max_bytes: 10,
        ..Limits::default()
    };
    let e = parse_call(body.as_bytes(), &limits).unwrap_err();
    assert_eq!(
        e,
        XmlRpcError::TooLarge(format!("body is {} bytes, the limit is 10", body.len()))
    );
    assert!(
        parse_call(
            body.as_bytes(),
            &Limits {
                max_bytes: body.len(),
                ..limits
            }
        )
        .is_ok()
    );
}

fn nested_arrays(depth: usize) -> String {
    let mut v = String::from("<value><int>1</int></value>");
    for _ in 0..depth {
        v = format!("<value><array><data>{v}</data></array></value>");
    }
    format!(
        "<methodCall><methodName>m</methodName><params><param>{v}</param></params></methodCall>"
    )
}

#[test]
fn too_deep() {
    let limits = Limits::default();
    assert!(parse_call(nested_arrays(64).as_bytes(), &limits).is_ok());
    let e = parse_call(nested_arrays(65).as_bytes(), &limits).unwrap_err();
    assert!(
        matches!(&e, XmlRpcError::TooLarge(m) if m.starts_with("arrays and structs nested deeper than 64")),
        "{e}"
    );
    // Structs count too.
    let mut v = String::from("<value/>");
    for _ in 0..3 {
        v = format!("<value><struct><member><name>n</name>{v}</member></struct></value>");
    }
    let body = format!(
        "<methodCall><methodName>m</methodName><params><param>{v}</param></params></methodCall>"
    );
    let shallow = Limits {
        max_depth: 2,
        ..limits
    };
    assert!(matches!(
        parse_call(body.as_bytes(), &shallow),
        Err(XmlRpcError::TooLarge(_))
    ));
    assert!(
        parse_call(
            body.as_bytes(),
            &Limits {
                max_depth: 3,
                ..limits
            }
        )
        .is_ok()
    );
}

/// The parser itself does not recurse: a generous limit is safe for it.
#[test]
fn deep_nesting_does_not_recurse() {
    let depth = 1_000;
    let mut body = String::from("<methodCall><methodName>m</methodName><params><param>");
    body.push_str(&"<value><array><data>".repeat(depth));
    body.push_str(&"</data></array></value>".repeat(depth));
    body.push_str("</param></params></methodCall>");
    let limits = Limits {
        max_depth: depth,
        ..Limits::default()
    };
    let mut v = &parse_call(body.as_bytes(), &limits).unwrap().params[0];
    let mut seen = 1;
    while let Value::Array(items) = v {
        match items.first() {
            Some(inner) => {
                v = inner;
                seen += 1;
            }
            None => break,
        }
    }
    assert_eq!(seen, depth);
}

// ---- Responses ----

/// What OpenNebula's own server (xmlrpc-c) answers, CRLF line ends and all.
#[test]
fn parse_opennebula_success_response() {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<methodResponse>\r\n<params>\r\n\
                <param><value><array><data>\r\n<value><boolean>1</boolean></value>\r\n\
                <value><string>&lt;VM&gt;&lt;ID&gt;3&lt;/ID&gt;&lt;/VM&gt;</string></value>\r\n\
                <value><i4>0</i4></value>\r\n</data></array></value></param>\r\n</params>\r\n\
                </methodResponse>\r\n";
    assert_eq!(
        parse_response(body.as_bytes(), &Limits::default()).unwrap(),
        MethodResponse::Success(Value::Array(vec![
            Value::Bool(true),
            s("<VM><ID>3</ID></VM>"),
            Value::Int(0)
        ]))
    );
}

#[test]
fn parse_fault_response() {
    let body = write_fault(-506, "Unknown method <x> & more");
    assert_eq!(
        parse_response(body.as_bytes(), &Limits::default()).unwrap(),
        MethodResponse::Fault {
            code: -506,
            message: "Unknown method <x> & more".into()
        }
    );
    // Member order does not matter, extra members are ignored, i4 is fine.
    let body = "<methodResponse><fault><value><struct>\
                <member><name>faultString</name><value>oops</value></member>\
                <member><name>extra</name><value><nil/></value></member>\
                <member><name>faultCode</name><value><i4>4</i4></value></member>\
                </struct></value></fault></methodResponse>";
    assert_eq!(
        parse_response(body.as_bytes(), &Limits::default()).unwrap(),
        MethodResponse::Fault {
            code: 4,
            message: "oops".into()
        }
    );
}

#[test]
fn malformed_responses() {
    let cases: &[(&str, &str)] = &[
        (
            "<methodResponse><params></params></methodResponse>",
            "exactly one value, this one has 0",
        ),
        (
            "<methodResponse><params><param><value/></param><param><value/></param></params></methodResponse>",
            "exactly one value, this one has 2",
        ),
        (
            "<methodResponse></methodResponse>",
            "expected <params> or <fault>",
        ),
        (
            "<methodCall/>",
            "expected <methodResponse>, found <methodCall>",
        ),
        (
            "<methodResponse><fault><value><int>1</int></value></fault></methodResponse>",
            "a fault must be a struct, not int",
        ),
        (
            "<methodResponse><fault><value><struct><member><name>faultCode</name><value><int>1</int>\
          </value></member></struct></value></fault></methodResponse>",
            "fault without a string faultString",
        ),
        (
            "<methodResponse><fault><value><struct><member><name>faultString</name><value>x\
          </value></member></struct></value></fault></methodResponse>",
            "fault without an int faultCode",
        ),
        (
            "<methodResponse><fault><value><struct><member><name>faultCode</name><value>x</value>\
          </member></struct></value></fault></methodResponse>",
            "faultCode has the wrong type string",
        ),
        (
            "<methodResponse><fault><value><struct><member><name>faultCode</name><value><i8>4294967296</i8>\
          </value></member></struct></value></fault></methodResponse>",
            "faultCode 4294967296 out of range",
        ),
        (
            "<methodResponse><params><param><value/></param></params></methodResponse>x",
            "unexpected text",
        ),
    ];
    for (body, needle) in cases {
        let e = parse_response(body.as_bytes(), &Limits::default())
            .unwrap_err()
            .to_string();
        assert_contains(&e, needle);
    }
}

// ---- Writing ----

#[test]
fn write_response_exact() {
    assert_eq!(
        write_response(&one_success(Value::Int(5))),
        "<?xml version=\"1.0\"?>\n<methodResponse><params><param><value><array><data>\
         <value><boolean>1</boolean></value><value><int>5</int></value>\
         <value><int>0</int></value></data></array></value></param></params></methodResponse>\n"
    );
}

#[test]
fn write_failure_exact() {
    assert_eq!(
        write_response(&one_failure(
            "[one.vm.info] Error getting virtual machine [3].",
            1024
        )),
        "<?xml version=\"1.0\"?>\n<methodResponse><params><param><value><array><data>\
         <value><boolean>0</boolean></value>\
         <value><string>[one.vm.info] Error getting virtual machine [3].</string></value>\
         <value><int>1024</int></value><value><int>-1</int></value><value><int>-1</int></value>\
         </data></array></value></param></params></methodResponse>\n"
    );
}

#[test]
fn write_fault_exact() {
    assert_eq!(
        write_fault(-501, "a<b"),
        "<?xml version=\"1.0\"?>\n<methodResponse><fault><value><struct>\
         <member><name>faultCode</name><value><int>-501</int></value></member>\
         <member><name>faultString</name><value><string>a&lt;b</string></value></member>\
         </struct></value></fault></methodResponse>\n"
    );
}

#[test]
fn write_call_exact() {
    assert_eq!(
        write_call(
            "one.vm.info",
            &[s("u:p"), Value::Int(1), Value::Bool(false)]
        ),
        "<?xml version=\"1.0\"?>\n<methodCall><methodName>one.vm.info</methodName><params>\
         <param><value><string>u:p</string></value></param>\
         <param><value><int>1</int></value></param>\
         <param><value><boolean>0</boolean></value></param></params></methodCall>\n"
    );
}

#[test]
fn one_answers() {
    assert_eq!(
        one_success(s("x")),
        Value::Array(vec![Value::Bool(true), s("x"), Value::Int(0)])
    );
    assert_eq!(
        one_failure("no", 256),
        Value::Array(vec![
            Value::Bool(false),
            s("no"),
            Value::Int(256),
            Value::Int(-1),
            Value::Int(-1)
        ])
    );
}

#[test]
fn int_width() {
    let w = |n: i64| write_response(&Value::Int(n));
    assert!(w(i32::MAX.into()).contains("<int>2147483647</int>"));
    assert!(w(i32::MIN.into()).contains("<int>-2147483648</int>"));
    assert!(w(i64::from(i32::MAX) + 1).contains("<i8>2147483648</i8>"));
    assert!(w(i64::MIN).contains("<i8>-9223372036854775808</i8>"));
}

#[test]
fn other_scalars_written() {
    let w = |v: Value| write_response(&v);
    assert!(w(Value::Double(1.5)).contains("<value><double>1.5</double></value>"));
    for x in [
        1e300,
        -1e-300,
        0.1,
        f64::MAX,
        f64::MIN_POSITIVE,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ] {
        assert_eq!(round_trip(&Value::Double(x)), Value::Double(x), "{x}");
    }
    match round_trip(&Value::Double(f64::NAN)) {
        Value::Double(x) => assert!(x.is_nan()),
        other => panic!("{other:?}"),
    }
    assert!(w(Value::Base64(b"hello".to_vec())).contains("<base64>aGVsbG8=</base64>"));
    assert!(
        w(Value::DateTime("20240101T00:00:00".into()))
            .contains("<dateTime.iso8601>20240101T00:00:00</dateTime.iso8601>")
    );
    assert!(w(Value::Nil).contains("<value><nil/></value>"));
    assert!(w(Value::Struct(vec![("a&".into(), Value::Bool(true))])).contains(
        "<value><struct><member><name>a&amp;</name><value><boolean>1</boolean></value></member></struct></value>"
    ));
    assert!(w(Value::Array(vec![])).contains("<value><array><data></data></array></value>"));
}

fn round_trip(v: &Value) -> Value {
    match parse_response(write_response(v).as_bytes(), &Limits::default()) {
        Ok(MethodResponse::Success(v)) => v,
        other => panic!("{other:?}"),
    }
}

fn escaped(s: &str) -> String {
    let mut out = Vec::new();
    escape_into(&mut out, s);
    String::from_utf8(out).unwrap()
}

#[test]
fn escaping() {
    assert_eq!(escaped(""), "");
    assert_eq!(escaped("plain"), "plain");
    assert_eq!(escaped("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d\"e'f");
    assert_eq!(escaped("]]>"), "]]&gt;");
    assert_eq!(escaped("&&"), "&amp;&amp;");
    assert_eq!(escaped("é<日本>🚀"), "é&lt;日本&gt;🚀");
    assert_eq!(escaped("a\tb\nc\rd"), "a\tb\nc&#13;d");
    for text in [
        "",
        "plain",
        "a&b<c>d\r",
        "\u{0}\u{1F}",
        "\u{FFFE}\u{FFFF}\u{FEFF}",
        "é<日本>🚀",
    ] {
        assert_eq!(escaped_len(text), escaped(text).len(), "{text:?}");
    }
}

/// XML 1.0 cannot carry these characters at all (not even as `&#1;`), so they become U+FFFD.
#[test]
fn characters_xml_cannot_carry_are_replaced() {
    assert_eq!(
        escaped("a\u{0}b\u{1}c\u{8}\u{B}\u{C}\u{E}\u{1F}d"),
        "a\u{FFFD}b\u{FFFD}c\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}\u{FFFD}d"
    );
    assert_eq!(escaped("x\u{FFFE}y\u{FFFF}z"), "x\u{FFFD}y\u{FFFD}z");
    // Neighbours of the forbidden ones that start with the same byte stay.
    assert_eq!(
        escaped("\u{FEFF}\u{FFFD}\u{FFFC}\u{E000}\u{7F}\u{85}"),
        "\u{FEFF}\u{FFFD}\u{FFFC}\u{E000}\u{7F}\u{85}"
    );
    // ANSI colours in a VM log, say.
    assert_eq!(
        round_trip(&s("\u{1b}[31mred\u{1b}[0m\r\n")),
        s("\u{FFFD}[31mred\u{FFFD}[0m\r\n")
    );
}

#[test]
fn written_output_is_well_formed_for_strict_parsers() {
    // Every byte value below 0x80 as a string: the written body must not contain raw control
    // characters other than tab and newline.
    let all: String = (0u8..0x80).map(char::from).collect();
    let body = write_response(&s(&all));
    assert!(body.bytes().all(|b| b >= 0x20 || b == b'\t' || b == b'\n'));
}

#[test]
fn big_string_is_written_in_one_allocation() {
    // 4 MB keeps the debug-build test quick; the sizing does not depend on the length.
    let mut doc = String::with_capacity(4 << 20);
    while doc.len() < 4 << 20 {
        doc.push_str("<VM><ID>12345</ID><NAME>vm &amp; \"friends\"</NAME><TEMPLATE/></VM>\n");
    }
    let v = one_success(Value::String(doc.clone()));
    let body = write_response(&v);
    assert!(
        body.len() <= 128 + estimate(&v),
        "{} > {}",
        body.len(),
        128 + estimate(&v)
    );
    assert!(
        body.len() + 200 > 128 + estimate(&v),
        "estimate far too big"
    );
    assert_eq!(round_trip(&v), one_success(Value::String(doc)));
}

#[test]
fn call_round_trip() {
    let params = vec![
        s("oneadmin:pw"),
        Value::Int(-3),
        Value::Int(1 << 40),
        Value::Bool(true),
        s("NAME=\"a & b\"\nMEMORY=\"<64>\""),
        s(""),
        s("  spaced  "),
        Value::Double(2.5),
        Value::Base64(vec![0, 1, 2, 255]),
        Value::DateTime("19980717T14:08:55".into()),
        Value::Array(vec![Value::Nil, Value::Array(vec![])]),
        Value::Struct(vec![("k".into(), Value::Struct(vec![]))]),
    ];
    let body = write_call("one.vm.allocate", &params);
    assert_eq!(
        call(&body),
        MethodCall {
            method: "one.vm.allocate".into(),
            params
        }
    );
}

#[test]
fn response_round_trip() {
    for v in [
        one_success(s("<VM><ID>1</ID></VM>")),
        one_failure(
            "[one.vm.info] User couldn't be authenticated, aborting call.",
            256,
        ),
        Value::Struct(vec![("a".into(), Value::Array(vec![Value::Int(i64::MAX)]))]),
    ] {
        assert_eq!(round_trip(&v), v);
    }
}

// ---- Properties ----

/// Any value tree the writer may meet.
fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        any::<bool>().prop_map(Value::Bool),
        any::<String>().prop_map(Value::String),
        "[ \t\r\n<>&a-z]{0,8}".prop_map(Value::String),
        any::<f64>()
            .prop_filter("NaN != NaN", |x| !x.is_nan())
            .prop_map(Value::Double),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Base64),
        "[0-9]{8}T[0-9]{2}:[0-9]{2}:[0-9]{2}".prop_map(Value::DateTime),
        Just(Value::Nil),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((any::<String>(), inner), 0..6).prop_map(Value::Struct),
        ]
    })
}

/// What a value becomes after a round trip: characters XML cannot carry turn into U+FFFD.
fn sanitize(v: &Value) -> Value {
    fn clean(s: &str) -> String {
        s.chars()
            .map(|c| match c {
                '\t' | '\n' | '\r' => c,
                '\u{0}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}' => '\u{FFFD}',
                c => c,
            })
            .collect()
    }
    match v {
        Value::String(s) => Value::String(clean(s)),
        Value::DateTime(s) => Value::DateTime(clean(s)),
        Value::Array(items) => Value::Array(items.iter().map(sanitize).collect()),
        Value::Struct(members) => Value::Struct(
            members
                .iter()
                .map(|(n, v)| (clean(n), sanitize(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_response_round_trip(v in arb_value()) {
        prop_assert_eq!(round_trip(&v), sanitize(&v));
    }

    #[test]
    fn prop_call_round_trip(method in "[a-z.]{1,20}", params in proptest::collection::vec(arb_value(), 0..4)) {
        let body = write_call(&method, &params);
        let parsed = parse_call(body.as_bytes(), &Limits::default()).unwrap();
        prop_assert_eq!(parsed.method, method);
        prop_assert_eq!(parsed.params, params.iter().map(sanitize).collect::<Vec<_>>());
    }

    #[test]
    fn prop_escape_matches_sanitize(text in any::<String>()) {
        let body = write_response(&Value::String(text.clone()));
        prop_assert_eq!(round_trip(&Value::String(text.clone())), sanitize(&Value::String(text)));
        prop_assert!(body.bytes().all(|b| b >= 0x20 || b == b'\t' || b == b'\n'));
    }

    #[test]
    fn prop_parse_call_arbitrary_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_call(&body, &Limits::default());
        let _ = parse_response(&body, &Limits::default());
    }

    /// Mutations of a valid body reach much deeper into the grammar than random bytes.
    #[test]
    fn prop_parse_call_mutated_never_panics(
        params in proptest::collection::vec(arb_value(), 0..3),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
    ) {
        let mut body = write_call("one.vm.info", &params).into_bytes();
        for (at, byte, op) in edits {
            if body.is_empty() {
                break;
            }
            let i = at.index(body.len());
            match op {
                0 => body[i] = byte,
                1 => body.insert(i, byte),
                _ => { body.remove(i); }
            }
        }
        let limits = Limits { max_depth: 3, ..Limits::default() };
        let _ = parse_call(&body, &limits);
        let _ = parse_response(&body, &limits);
    }
}

/// Every value's written size stays within the estimate (so the buffer never grows).
#[test]
fn estimate_is_an_upper_bound() {
    for v in [
        Value::Int(i64::MIN),
        Value::Double(-5e-324),
        Value::Double(-f64::MAX),
        Value::Bool(true),
        Value::Nil,
        Value::DateTime("20240101T00:00:00".into()),
        Value::Base64(vec![1; 10]),
        Value::Array(vec![]),
        Value::Struct(vec![("n".into(), Value::Nil)]),
    ] {
        let body = write_response(&v);
        assert!(body.len() <= 128 + estimate(&v), "{v:?}");
    }
}
