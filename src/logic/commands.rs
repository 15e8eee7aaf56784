//! `SessionsCommandSet`: the eight Pip commands with their parameter schemas (contract §3), plus
//! the lifecycle extensions: optional `version` on writes (optimistic concurrency), `ttl` on
//! open, `touch_session`, `validate_session`, `close_user_sessions`, `rotate_session_id` and
//! `purge_sessions`.

use super::controller::SessionsController;
use crate::data::version1::{open_session_schema, OpenSessionRequest, SessionsFilter, MAX_USER_ID_LENGTH};
use crate::toolkit::commands::{output, written, Command, CommandOutput, CommandResult, CommandSet, Parameters};
use crate::toolkit::data::PagingParams;
use crate::toolkit::errors::ApplicationError;
use crate::toolkit::schema::{ObjectSchema, Schema, TypeCode};
use futures::FutureExt;
use std::future::Future;
use std::sync::{Arc, Weak};

/// A session id parameter: any string. An id no session can have (see
/// [`is_session_id_shape`](crate::data::version1::is_session_id_shape)) is an unknown id, answered as
/// one (204), never a 400; so the schema has no length cap.
fn session_id_schema() -> Schema {
    Schema::string().describe("Session id")
}

fn schema() -> ObjectSchema {
    ObjectSchema::new().allow_undefined(true)
}

/// Builds a command whose action runs on the controller (if it still exists).
fn command<F, Fut>(
    name: &str,
    description: &str,
    schema: ObjectSchema,
    me: &Weak<SessionsController>,
    action: F,
) -> Command
where
    F: Fn(Arc<SessionsController>, Option<String>, Parameters) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<CommandOutput, ApplicationError>> + Send + 'static,
{
    let me = me.clone();
    let action = Arc::new(action);
    // The action's future boxed as it is: an `async` wrapper around it would be moved into the
    // box with the action's future inside (kilobytes per call).
    Command::new(name, description, schema, move |cid, args| -> CommandResult {
        match me.upgrade() {
            Some(c) => action(c, cid, args).boxed(),
            None => futures::future::ready(Err(ApplicationError::invalid_state(
                "CLOSED",
                "The sessions controller is closed",
            )))
            .boxed(),
        }
    })
}

fn version_schema() -> Schema {
    Schema::integer().min(1).describe("Expected current version (optimistic concurrency)")
}

/// `{session_id, version?}`.
fn by_id_schema() -> ObjectSchema {
    schema()
        .with_required_property("session_id", session_id_schema())
        .with_optional_property("version", version_schema())
}

fn count(n: u64) -> Result<CommandOutput, ApplicationError> {
    output(&serde_json::json!({ "count": n }))
}

/// The `session_id` parameter, borrowed from the parameters the action's future owns (no copy
/// per command).
fn session_id(args: &Parameters) -> Result<&str, ApplicationError> {
    args.required_str("session_id")
}

fn optional(v: Option<crate::data::version1::SessionV1>) -> Result<CommandOutput, ApplicationError> {
    Ok(v.and_then(|s| written(&s)))
}

/// The command set of a controller.
pub fn sessions_command_set(me: Weak<SessionsController>) -> CommandSet {
    let mut set = CommandSet::new();
    set.add(command(
        "get_sessions",
        "Gets a page of sessions by filter (id, user_id, active, from_time, to_time)",
        schema()
            .with_optional_property("filter", Schema::map(TypeCode::Any).describe("Filter values (Pip FilterParams)"))
            .with_optional_property(
                "paging",
                ObjectSchema::new()
                    .allow_undefined(true)
                    .with_optional_property("skip", Schema::integer().min(0))
                    .with_optional_property("take", Schema::integer().min(0))
                    .with_optional_property("total", TypeCode::Boolean),
            ),
        &me,
        |c, cid, args| async move {
            let filter = SessionsFilter::from_value(args.get("filter"))?;
            let paging = PagingParams::from_value(args.get("paging"))?;
            Ok(Some(c.get_sessions_json(cid.as_deref(), &filter, &paging).await?))
        },
    ));
    set.add(command(
        "get_session_by_id",
        "Gets a session by id (closed ones too); 204 for an unknown id",
        schema().with_required_property("session_id", session_id_schema()),
        &me,
        |c, cid, args| async move { c.get_session_by_id_json(cid.as_deref(), session_id(&args)?).await },
    ));
    set.add(command(
        "open_session",
        "Opens a new session for a user",
        open_session_schema(),
        &me,
        |c, cid, args| async move {
            Ok(Some(c.open_session_json(cid.as_deref(), OpenSessionRequest::from_args(args)?).await?))
        },
    ));
    set.add(command(
        "store_session_data",
        "Replaces the data of an open session; 409 SESSION_CLOSED for a closed one",
        by_id_schema().with_required_property("data", Schema::any().describe("Session data")),
        &me,
        |c, cid, mut args| async move {
            let data = args.take_json("data");
            c.store_session_data_json(cid.as_deref(), session_id(&args)?, data, args.get_i64("version")).await
        },
    ));
    set.add(command(
        "update_session_user",
        "Replaces the cached user of an open session; 409 SESSION_CLOSED for a closed one",
        by_id_schema().with_required_property("user", Schema::any().describe("Cached user object")),
        &me,
        |c, cid, mut args| async move {
            let user = args.take_json("user");
            c.update_session_user_json(cid.as_deref(), session_id(&args)?, user, args.get_i64("version")).await
        },
    ));
    set.add(command(
        "close_session",
        "Closes a session (idempotent)",
        by_id_schema(),
        &me,
        |c, cid, args| async move {
            c.close_session_json(cid.as_deref(), session_id(&args)?, args.get_i64("version")).await
        },
    ));
    set.add(command(
        "close_expired_sessions",
        "Closes every expired session now; always 204",
        schema(),
        &me,
        |c, cid, _args| async move {
            c.close_expired_sessions(cid.as_deref()).await?;
            Ok(None)
        },
    ));
    set.add(command(
        "delete_session_by_id",
        "Deletes a session; returns it as it was",
        by_id_schema(),
        &me,
        |c, cid, args| async move {
            optional(c.delete_session_by_id(cid.as_deref(), session_id(&args)?, args.get_i64("version")).await?)
        },
    ));
    add_extensions(&mut set, &me);
    describe_results(&mut set);
    set
}

/// What each command answers with 200, for the OpenAPI document (typed clients).
fn describe_results(set: &mut CommandSet) {
    use crate::data::version1::openapi::{schema_ref, schemas};
    for (name, schema) in schemas() {
        set.add_schema(name, schema);
    }
    for (command, result) in [
        ("get_sessions", Some("DataPage")),
        ("get_session_by_id", Some("SessionV1")),
        ("open_session", Some("SessionV1")),
        ("store_session_data", Some("SessionV1")),
        ("update_session_user", Some("SessionV1")),
        ("close_session", Some("SessionV1")),
        ("close_expired_sessions", None),
        ("delete_session_by_id", Some("SessionV1")),
        ("touch_session", Some("SessionV1")),
        ("validate_session", Some("SessionValidity")),
        ("close_user_sessions", Some("Count")),
        ("rotate_session_id", Some("SessionV1")),
        ("purge_sessions", Some("Count")),
    ] {
        set.describe_result(command, result.map(schema_ref));
    }
}

/// The lifecycle extensions (additive: Pip clients never call them).
fn add_extensions(set: &mut CommandSet, me: &Weak<SessionsController>) {
    set.add(command(
        "touch_session",
        "Refreshes request_time (and expire_time) of an open session",
        by_id_schema(),
        me,
        |c, cid, args| async move {
            c.touch_session_json(cid.as_deref(), session_id(&args)?, args.get_i64("version")).await
        },
    ));
    set.add(command(
        "validate_session",
        "Tells whether a session is valid now, without touching it: {is_valid, expire_time, ttl}",
        schema().with_required_property("session_id", session_id_schema()),
        me,
        |c, cid, args| async move { output(&c.validate_session(cid.as_deref(), session_id(&args)?).await?) },
    ));
    set.add(command(
        "close_user_sessions",
        "Closes every open session of a user, optionally except one: {count}",
        schema()
            .with_required_property("user_id", Schema::string().max_length(MAX_USER_ID_LENGTH))
            .with_optional_property("except_session_id", session_id_schema()),
        me,
        |c, cid, args| async move {
            let user_id = args.required_str("user_id")?;
            count(c.close_user_sessions(cid.as_deref(), user_id, args.get_str("except_session_id")).await?)
        },
    ));
    set.add(command(
        "rotate_session_id",
        "Moves an open session to a new id; the old id stops working at once",
        by_id_schema(),
        me,
        |c, cid, args| async move {
            optional(c.rotate_session_id(cid.as_deref(), session_id(&args)?, args.get_i64("version")).await?)
        },
    ));
    set.add(command(
        "purge_sessions",
        "Deletes closed sessions past the retention period now: {count}",
        schema(),
        me,
        |c, cid, _args| async move { count(c.purge_sessions(cid.as_deref()).await?) },
    ));
}
