//! The admin API (`/api/online`, `/api/push`, `/api/broadcast`) of
//! `PROTOCOL.md`, against the real binary, with the pushes received by
//! independent WebSocket clients.

mod common;

use serde_json::{json, Value};

use common::{Client, Server};

const TOKEN: &str = "adm1n-t0ken";

fn admin_server() -> Server {
    Server::start(&["--admin-token", TOKEN])
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON: {body:?}: {e}"))
}

/// A push (MESSAGE 30003) and its body.
fn push_body(value: &Value) -> &Value {
    assert_eq!(value["code"], 1756, "expected MESSAGE, got {value}");
    let body = &value["body"];
    assert_eq!(body["type"], 30003, "{value}");
    assert_eq!(body["from"], Value::Null, "{value}");
    assert!(body["time"].is_u64() && body["seq"].is_u64(), "{value}");
    body
}

#[test]
fn the_api_is_404_without_an_admin_token() {
    let server = Server::start(&[]);
    assert_eq!(server.request("GET", "/api/online", None, "").0, 404);
    assert_eq!(
        server.request("GET", "/api/online", Some("anything"), "").0,
        404
    );
    let push = r#"{"to":"alice","data":1}"#;
    assert_eq!(server.request("POST", "/api/push", Some("x"), push).0, 404);
    let broadcast = r#"{"data":1}"#;
    assert_eq!(
        server
            .request("POST", "/api/broadcast", Some("x"), broadcast)
            .0,
        404
    );
}

#[test]
fn the_api_is_401_without_the_right_bearer_token() {
    let server = admin_server();
    let mut alice = server.user("alice");
    for bearer in [None, Some("wrong"), Some(""), Some("adm1n-t0ke")] {
        assert_eq!(server.request("GET", "/api/online", bearer, "").0, 401);
        let push = r#"{"to":"alice","data":"nope"}"#;
        assert_eq!(server.request("POST", "/api/push", bearer, push).0, 401);
        let broadcast = r#"{"data":"nope"}"#;
        assert_eq!(
            server
                .request("POST", "/api/broadcast", bearer, broadcast)
                .0,
            401
        );
    }
    // Not "Bearer": a Basic header is refused too.
    let response = server.http(
        format!("GET /api/online HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {TOKEN}\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(common::split_response(&response).0, 401);
    // Nothing refused was pushed.
    assert_eq!(alice.sync(), Vec::<Value>::new());
    assert_eq!(server.request("GET", "/api/online", Some(TOKEN), "").0, 200);
}

#[test]
fn online_lists_distinct_users() {
    let server = admin_server();
    let online = || {
        let (status, body) = server.request("GET", "/api/online", Some(TOKEN), "");
        assert_eq!(status, 200, "{body}");
        parse(&body)
    };
    assert_eq!(online(), json!({"online": 0, "users": []}));
    let _alice_tab1 = server.user("alice");
    let _alice_tab2 = server.user("alice");
    let bob = server.user("bob");
    let _numeric = {
        let mut client = server.ws("/ws");
        client.auth(json!(7));
        client
    };
    let mut anonymous = server.ws("/ws");
    anonymous.sync();
    let listed = online();
    assert_eq!(listed["online"], 3, "{listed}");
    let mut users: Vec<String> = listed["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().expect("ids are strings").to_owned())
        .collect();
    users.sort();
    assert_eq!(users, ["7", "alice", "bob"]);
    drop(bob);
    assert!(common::eventually(
        std::time::Duration::from_secs(10),
        || online()["online"] == 2
    ));
}

#[test]
fn push_reaches_every_session_of_one_user_as_30003() {
    let server = admin_server();
    let mut alice_tab1 = server.user("alice");
    let mut alice_tab2 = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    // bob sends alice a PEER first: the push takes the next seq.
    bob.send_json(&json!({"code": 10002, "data": {"to": "alice"}}));
    assert_eq!(bob.sync(), Vec::<Value>::new(), "handled, so queued first");

    let (status, body) = server.request(
        "POST",
        "/api/push",
        Some(TOKEN),
        r#"{"to":"alice","data":{"notice":"maintenance at 5"}}"#,
    );
    assert_eq!((status, parse(&body)), (200, json!({"delivered": 2})));
    for tab in [&mut alice_tab1, &mut alice_tab2] {
        assert_eq!(tab.event()["body"]["seq"], 1);
        let got = tab.event();
        let body = push_body(&got);
        assert_eq!(body["to"], "alice");
        assert_eq!(body["data"], json!({"notice": "maintenance at 5"}));
        assert_eq!(body["seq"], 2);
    }
    // Only alice.
    assert_eq!(bob.sync(), Vec::<Value>::new());
    assert_eq!(carol.sync(), Vec::<Value>::new());

    // An integer `to` is the decimal id; any data, or none.
    let mut numeric = server.ws("/ws");
    numeric.auth(json!(42));
    let (status, body) = server.request("POST", "/api/push", Some(TOKEN), r#"{"to":42}"#);
    assert_eq!((status, parse(&body)), (200, json!({"delivered": 1})));
    let got = numeric.event();
    let body = push_body(&got);
    assert_eq!(body["to"], "42");
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["seq"], 1);
}

#[test]
fn push_to_an_offline_user_delivers_0() {
    let server = admin_server();
    let _alice = server.user("alice");
    let (status, body) = server.request(
        "POST",
        "/api/push",
        Some(TOKEN),
        r#"{"to":"nobody","data":"hello?"}"#,
    );
    assert_eq!((status, parse(&body)), (200, json!({"delivered": 0})));
}

#[test]
fn a_bad_body_is_400() {
    let server = admin_server();
    let mut alice = server.user("alice");
    let bad_pushes = [
        "",
        "not json",
        "[]",
        "\"alice\"",
        "{'to':'alice'}",
        r#"{"data":1}"#,
        r#"{"to":"a b","data":1}"#,
        r#"{"to":"","data":1}"#,
        r#"{"to":-1,"data":1}"#,
        r#"{"to":null,"data":1}"#,
        r#"{"to":["alice"],"data":1}"#,
    ];
    for body in bad_pushes {
        let (status, answer) = server.request("POST", "/api/push", Some(TOKEN), body);
        assert_eq!(status, 400, "{body:?} -> {answer}");
        assert!(!answer.is_empty(), "the reason is in the body");
    }
    for body in ["", "not json", "[1]", "7", "{'data':1}"] {
        let (status, answer) = server.request("POST", "/api/broadcast", Some(TOKEN), body);
        assert_eq!(status, 400, "{body:?} -> {answer}");
    }
    assert_eq!(alice.sync(), Vec::<Value>::new(), "nothing was pushed");
}

#[test]
fn broadcast_reaches_every_authenticated_session() {
    let server = admin_server();
    let mut clients: Vec<Client> = vec![
        server.user("alice"),
        server.user("alice"),
        server.user("bob"),
        server.user("carol"),
    ];
    let mut anonymous = server.ws("/ws");
    let (status, body) = server.request(
        "POST",
        "/api/broadcast",
        Some(TOKEN),
        r#"{"data":{"text":"server restarts soon"}}"#,
    );
    assert_eq!((status, parse(&body)), (200, json!({"delivered": 4})));
    for client in &mut clients {
        let got = client.event();
        let body = push_body(&got);
        assert_eq!(body["to"], Value::Null);
        assert_eq!(body["data"], json!({"text": "server restarts soon"}));
        assert_eq!(body["seq"], 1);
    }
    assert_eq!(anonymous.sync(), Vec::<Value>::new(), "not authenticated");

    // No sessions: delivered 0.
    drop(clients);
    let server = admin_server();
    let (status, body) = server.request("POST", "/api/broadcast", Some(TOKEN), "{}");
    assert_eq!((status, parse(&body)), (200, json!({"delivered": 0})));
}

#[test]
fn api_routes_check_their_method() {
    let server = admin_server();
    assert_eq!(
        server.request("POST", "/api/online", Some(TOKEN), "").0,
        405
    );
    assert_eq!(server.request("GET", "/api/push", Some(TOKEN), "").0, 405);
    assert_eq!(
        server.request("GET", "/api/broadcast", Some(TOKEN), "").0,
        405
    );
}

#[test]
fn head_on_api_online_answers_like_get_without_a_body() {
    let server = admin_server();
    let _alice = server.user("alice");
    let head_request = |bearer: &str| {
        let response = server.http(
            format!(
                "HEAD /api/online HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\n\r\n"
            )
            .as_bytes(),
        );
        let (head, body) = response.split_once("\r\n\r\n").expect("a complete head");
        (head.to_owned(), body.to_owned())
    };
    let (status, get_body) = server.request("GET", "/api/online", Some(TOKEN), "");
    assert_eq!(status, 200);
    let (head, body) = head_request(TOKEN);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.contains(&format!("\r\nContent-Length: {}\r\n", get_body.len())),
        "the length of the GET body: {head}"
    );
    assert_eq!(body, "");
    // The token is checked as for a GET.
    let (head, body) = head_request("wrong");
    assert!(head.starts_with("HTTP/1.1 401 "), "{head}");
    assert_eq!(body, "");
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    // RFC 9110 11.1: "It uses a case-insensitive token to identify the
    // authentication scheme".
    let server = admin_server();
    let online = |authorization: &str| {
        let request = format!(
            "GET /api/online HTTP/1.1\r\nHost: x\r\nAuthorization: {authorization}\r\n\r\n"
        );
        common::split_response(&server.http(request.as_bytes())).0
    };
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        assert_eq!(online(&format!("{scheme} {TOKEN}")), 200, "{scheme}");
    }
    // The token itself stays case-sensitive, and the scheme is a whole word.
    assert_eq!(online(&format!("bearer {}", TOKEN.to_uppercase())), 401);
    assert_eq!(online(&format!("Bearer{TOKEN}")), 401);
    assert_eq!(online(&format!("Basic {TOKEN}")), 401);
    assert_eq!(online(&format!("Bearers {TOKEN}")), 401);
}
