//! The settings page (admins).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kontor_core::Role;
use minijinja::Value;
use serde_json::json;

use super::pages::*;
use crate::AppState;

pub(super) async fn settings(State(state): State<AppState>, staff: Staff) -> Response {
    if staff.session.user.role != Role::Admin {
        let mut ctx = base(Some(&staff), staff.lang);
        ctx.insert("rows", Value::from_serialize(Vec::<()>::new()));
        ctx.insert("missing", Value::from(true));
        let mut r = page("inbox.html", ctx);
        *r.status_mut() = StatusCode::FORBIDDEN;
        return r;
    }
    let err = |e| crate::error::AppError::from(e).into_response();
    let load = async {
        let users = state.store.list_users().await?;
        let teams = state.store.list_teams().await?;
        let mut team_rows = Vec::new();
        for t in &teams {
            let members = state.store.team_members(t.id).await?;
            team_rows.push(json!({ "id": t.id, "name": t.name, "members": members }));
        }
        let canned = state.store.list_canned(None).await?;
        let only_assignee = state.store.reply_only_assignee().await?;
        Ok::<_, kontor_store::StoreError>((users, team_rows, canned, only_assignee))
    };
    let (users, teams, canned, only_assignee) = match load.await {
        Ok(v) => v,
        Err(e) => return err(e),
    };
    let mut ctx = base(Some(&staff), staff.lang);
    ctx.insert("users", Value::from_serialize(&users));
    ctx.insert("teams", Value::from_serialize(&teams));
    ctx.insert("canned", Value::from_serialize(&canned));
    ctx.insert("reply_only_assignee", Value::from(only_assignee));
    page("settings.html", ctx)
}
