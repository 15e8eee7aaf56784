//! Routes as text, shared by the HTTP services and the HTTP clients.

/// Joins a base route and a sub-path into `/a/b` form.
pub fn join_route(base: &str, path: &str) -> String {
    let parts: Vec<&str> = base.split('/').chain(path.split('/')).filter(|p| !p.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_routes() {
        assert_eq!(join_route("v1/sessions", "get_sessions"), "/v1/sessions/get_sessions");
        assert_eq!(join_route("/v1/sessions/", "/swagger"), "/v1/sessions/swagger");
        assert_eq!(join_route("", "heartbeat"), "/heartbeat");
        assert_eq!(join_route("", ""), "/");
    }
}
