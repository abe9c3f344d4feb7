use super::*;
use one_proto::xmlrpc::{one_failure, one_success, parse_call, write_fault, write_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A one-shot HTTP server answering `status` and `body`; the task yields the raw request.
async fn serve_once(status: &'static str, body: String) -> (String, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/RPC2", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Headers, then as many body bytes as Content-Length says.
        let body_start = loop {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed early");
            request.extend_from_slice(&buf[..n]);
            if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&request[..body_start]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        while request.len() < body_start + len {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "client closed early");
            request.extend_from_slice(&buf[..n]);
        }
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(response.as_bytes()).await.unwrap();
        conn.shutdown().await.unwrap();
        String::from_utf8(request).unwrap()
    });
    (endpoint, task)
}

fn body_of(request: &str) -> &str {
    &request[request.find("\r\n\r\n").unwrap() + 4..]
}

#[tokio::test]
async fn call_prepends_session_and_unwraps_success() {
    let (endpoint, server) =
        serve_once("200 OK", write_response(&one_success(Value::Int(42)))).await;
    let client = Client::new(endpoint, "oneadmin:pw");
    let id = client
        .call_int(
            "one.vm.allocate",
            vec![Value::String("NAME=a".into()), Value::Bool(false)],
        )
        .await
        .unwrap();
    assert_eq!(id, 42);

    let request = server.await.unwrap();
    assert!(request.starts_with("POST /RPC2 HTTP/1.1\r\n"), "{request}");
    assert!(
        request
            .to_lowercase()
            .contains("\r\ncontent-type: text/xml\r\n"),
        "{request}"
    );
    let call = parse_call(body_of(&request).as_bytes(), &Limits::default()).unwrap();
    assert_eq!(call.method, "one.vm.allocate");
    assert_eq!(
        call.params,
        vec![
            Value::String("oneadmin:pw".into()),
            Value::String("NAME=a".into()),
            Value::Bool(false)
        ]
    );
}

#[tokio::test]
async fn system_version() {
    let (endpoint, _server) = serve_once(
        "200 OK",
        write_response(&one_success(Value::String("7.0.0".into()))),
    )
    .await;
    let client = Client::new(endpoint, "u:p");
    assert_eq!(client.system_version().await.unwrap(), "7.0.0");
}

#[tokio::test]
async fn api_failure_keeps_code_and_message() {
    let message = "[one.vm.info] Error getting virtual machine [7].";
    let (endpoint, _server) =
        serve_once("200 OK", write_response(&one_failure(message, 0x0400))).await;
    let client = Client::new(endpoint, "u:p");
    let e = client
        .call("one.vm.info", vec![Value::Int(7), Value::Bool(false)])
        .await
        .unwrap_err();
    assert_eq!(e.api_code(), Some(ErrorCode::NoExists));
    assert_eq!(e.to_string(), message);
    assert_eq!(e.method(), Some("one.vm.info"));
    match e {
        OcaError::Api(api) => {
            assert_eq!(api.code, ErrorCode::NoExists);
            assert_eq!(api.raw_code, 0x400);
            assert_eq!(api.message, message);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn fault_is_reported() {
    let (endpoint, _server) = serve_once("200 OK", write_fault(-506, "Unknown method")).await;
    let e = Client::new(endpoint, "u:p")
        .call("one.nope", vec![])
        .await
        .unwrap_err();
    match e {
        OcaError::Fault { code, message, .. } => {
            assert_eq!((code, message.as_str()), (-506, "Unknown method"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn http_error_status_is_transport() {
    let (endpoint, _server) = serve_once("500 Internal Server Error", "boom".into()).await;
    let e = Client::new(endpoint, "u:p")
        .call("one.system.version", vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, OcaError::Transport(m) if m.contains("HTTP 500") && m.contains("boom")),
        "{e:?}"
    );
}

#[tokio::test]
async fn connection_refused_is_transport() {
    // A port that was free a moment ago.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/RPC2", listener.local_addr().unwrap());
    drop(listener);
    let e = Client::new(endpoint.clone(), "u:p")
        .call("one.system.version", vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, OcaError::Transport(m) if m.starts_with(&endpoint)),
        "{e:?}"
    );
}

#[tokio::test]
async fn garbage_answer_is_protocol() {
    let (endpoint, _server) = serve_once("200 OK", "<html>hi</html>".into()).await;
    let e = Client::new(endpoint, "u:p")
        .call("one.system.version", vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(&e, OcaError::Protocol(m) if m.starts_with("one.system.version: malformed XML-RPC")),
        "{e:?}"
    );
}

#[tokio::test]
async fn typed_helpers_check_the_type() {
    let (endpoint, _server) =
        serve_once("200 OK", write_response(&one_success(Value::Int(3)))).await;
    let e = Client::new(endpoint, "u:p")
        .call_string("one.vm.info", vec![])
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "unexpected response: one.vm.info returned int where a string was expected"
    );
}

#[test]
fn envelope_success() {
    let v = unwrap_answer("m", one_success(Value::String("<VM/>".into()))).unwrap();
    assert_eq!(v, Value::String("<VM/>".into()));
    // Three-element failures (older servers) and int messages (goca allows them) work too.
    let e = unwrap_answer(
        "m",
        Value::Array(vec![Value::Bool(false), Value::Int(5), Value::Int(0x100)]),
    )
    .unwrap_err();
    assert_eq!(e.api_code(), Some(ErrorCode::Authentication));
    assert_eq!(e.to_string(), "[m] 5");
}

#[test]
fn envelope_unknown_or_missing_code_is_internal() {
    for code in [
        Some(Value::Int(12345)),
        Some(Value::Int(1 << 40)),
        Some(Value::String("x".into())),
        None,
    ] {
        let mut items = vec![Value::Bool(false), Value::String("bad".into())];
        items.extend(code);
        let e = unwrap_answer("m", Value::Array(items)).unwrap_err();
        assert_eq!(e.api_code(), Some(ErrorCode::Internal));
    }
}

#[test]
fn envelope_malformed() {
    for (v, needle) in [
        (Value::Int(1), "answered a int instead"),
        (Value::Array(vec![]), "starting with nothing and nothing"),
        (
            Value::Array(vec![Value::Bool(true)]),
            "starting with boolean and nothing",
        ),
        (
            Value::Array(vec![Value::Int(1), Value::Int(2)]),
            "starting with int and int",
        ),
        (
            Value::Array(vec![Value::Bool(false), Value::Nil]),
            "failed with a nil message",
        ),
    ] {
        let e = unwrap_answer("one.x", v).unwrap_err();
        assert!(
            matches!(&e, OcaError::Protocol(m) if m.contains(needle) && m.starts_with("one.x")),
            "{e:?}"
        );
    }
}

#[test]
fn debug_hides_the_password() {
    let client = Client::new("http://h:2633/RPC2", "alice:very-secret");
    let shown = format!("{client:?}");
    assert!(
        shown.contains("alice") && !shown.contains("very-secret"),
        "{shown}"
    );
    assert_eq!(client.username(), "alice");
    assert_eq!(client.endpoint(), "http://h:2633/RPC2");
}

#[test]
fn from_discovery() {
    let dir = std::env::temp_dir().join(format!("oca-from-discovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let auth = dir.join("auth");
    std::fs::write(&auth, "bob:pw\n").unwrap();
    let d = Discovery {
        one_xmlrpc: Some("http://x:2633/RPC2".into()),
        one_auth: Some(auth),
        timeout: Some("10".into()),
        home: None,
        system_dir: None,
    };
    let client = Client::from_discovery(&d).unwrap();
    assert_eq!(
        (client.endpoint(), client.username()),
        ("http://x:2633/RPC2", "bob")
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(matches!(
        Client::from_discovery(&Discovery::default()),
        Err(OcaError::Config(_))
    ));
}
