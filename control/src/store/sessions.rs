//! Console sign-in: password check, throttling against guessing, sessions with a CSRF token.
//!
//! Throttling is keyed by (login, client address) and kept in the store, so every control
//! node sees the same count: once `login_max_failures` failures since the last success fall
//! inside `login_window_ms`, attempts are refused — without checking the password — until
//! enough of them have aged out. Refused attempts are not recorded, so hammering a locked key
//! does not extend the lock; failures stay in the table for the compliance report.

use crate::auth::password::verify_password_off_executor;
use crate::auth::token::{SESSION_PREFIX, constant_time_eq, new_token, token_hash};
use crate::auth::{Caller, UserId};
use crate::error::{ControlError, Result};
use crate::secret::Secret;

use super::identity::normalize_email;
use super::{ControlStore, on_pool};

/// What a successful sign-in hands the HTTP layer: the session token for the cookie (only
/// here in clear), and the CSRF token the console echoes in a header on every change.
#[derive(Debug)]
pub struct NewSession {
    pub token: Secret<String>,
    pub csrf_token: String,
    pub user_id: UserId,
    pub expires_at_ms: i64,
}

/// A live session, found by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub user_id: UserId,
    pub csrf_token: String,
    pub expires_at_ms: i64,
}

impl SessionInfo {
    /// Does the CSRF token a request presented match this session's?
    pub fn csrf_matches(&self, presented: &str) -> bool {
        constant_time_eq(&self.csrf_token, presented)
    }
}

impl ControlStore {
    /// Signs a user in from `client_addr`. Errors: [`ControlError::Throttled`] while the
    /// (login, address) pair is locked, [`ControlError::InvalidCredentials`] otherwise.
    pub async fn login(
        &self,
        email: &str,
        password: &Secret<String>,
        client_addr: &str,
    ) -> Result<NewSession> {
        let login = normalize_email(email);
        let now = self.now_ms();
        if let Some(retry_after_ms) = self.retry_after_ms(&login, client_addr, now).await? {
            return Err(ControlError::Throttled { retry_after_ms });
        }
        let row: Option<(String, String, Option<i64>)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT id, password_hash, disabled_at_ms FROM users WHERE email = $1"
        )
        .bind(&login)
        .fetch_optional(p)
        .await?);
        let (stored, user) = match row {
            None => (None, None),
            Some((id, hash, disabled)) => (Some(hash), disabled.is_none().then_some(UserId(id))),
        };
        // Unknown users are checked against a dummy hash: the same time, the same answer.
        let password_ok = verify_password_off_executor(password, stored).await;
        let user = user.filter(|_| password_ok);
        self.record_attempt(&login, client_addr, now, user.is_some())
            .await?;
        let Some(user_id) = user else {
            return Err(ControlError::InvalidCredentials);
        };

        let token = new_token(SESSION_PREFIX);
        let csrf_token = new_token("").into_inner();
        let expires_at_ms = now + self.settings().session_ttl_ms;
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, client_addr, created_at_ms, \
             expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6)"
        )
        .bind(token_hash(token.expose()))
        .bind(&user_id.0)
        .bind(&csrf_token)
        .bind(client_addr)
        .bind(now)
        .bind(expires_at_ms)
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(NewSession {
            token,
            csrf_token,
            user_id,
            expires_at_ms,
        })
    }

    /// Milliseconds until `email` may try to sign in again from `client_addr`, or `None` if
    /// it may now (for a `Retry-After` header, or a console hint before the form is sent).
    pub async fn login_retry_after_ms(
        &self,
        email: &str,
        client_addr: &str,
    ) -> Result<Option<i64>> {
        self.retry_after_ms(&normalize_email(email), client_addr, self.now_ms())
            .await
    }

    /// Check and record are separate statements, so attempts racing on several nodes may
    /// get a few guesses past the limit; the limit still bounds guessing to that order.
    async fn retry_after_ms(
        &self,
        login: &str,
        client_addr: &str,
        now: i64,
    ) -> Result<Option<i64>> {
        let settings = self.settings();
        let window_start = now - settings.login_window_ms;
        // The newest `max` failures since the last success, inside the window.
        let failures: Vec<(i64,)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT attempted_at_ms FROM login_attempts \
             WHERE login = $1 AND client_addr = $2 AND succeeded = FALSE \
               AND attempted_at_ms > $3 \
               AND id > COALESCE((SELECT MAX(id) FROM login_attempts \
                                  WHERE login = $1 AND client_addr = $2 AND succeeded = TRUE), 0) \
             ORDER BY attempted_at_ms DESC LIMIT $4"
        )
        .bind(login)
        .bind(client_addr)
        .bind(window_start)
        .bind(settings.login_max_failures)
        .fetch_all(p)
        .await?);
        if (failures.len() as i64) < settings.login_max_failures {
            return Ok(None);
        }
        // Unlocked when the oldest of these leaves the window.
        let oldest = failures.last().map(|(t,)| *t).unwrap_or(now);
        Ok(Some((oldest + settings.login_window_ms - now).max(1)))
    }

    async fn record_attempt(
        &self,
        login: &str,
        client_addr: &str,
        now: i64,
        succeeded: bool,
    ) -> Result<()> {
        on_pool!(self, |p| sqlx::query(
            "INSERT INTO login_attempts (login, client_addr, attempted_at_ms, succeeded) \
             VALUES ($1, $2, $3, $4)"
        )
        .bind(login)
        .bind(client_addr)
        .bind(now)
        .bind(succeeded)
        .execute(p)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// Failed sign-ins for `login` since `since_ms` (for the compliance report).
    pub async fn failed_logins_since(&self, login: &str, since_ms: i64) -> Result<i64> {
        let (n,): (i64,) = on_pool!(self, |p| sqlx::query_as(
            "SELECT COUNT(*) FROM login_attempts \
             WHERE login = $1 AND succeeded = FALSE AND attempted_at_ms >= $2"
        )
        .bind(normalize_email(login))
        .bind(since_ms)
        .fetch_one(p)
        .await?);
        Ok(n)
    }

    /// The live session a token names: not expired, its user not disabled.
    pub async fn authenticate_session(&self, token: &str) -> Result<Option<SessionInfo>> {
        let row: Option<(String, String, i64)> = on_pool!(self, |p| sqlx::query_as(
            "SELECT s.user_id, s.csrf_token, s.expires_at_ms \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at_ms > $2 AND u.disabled_at_ms IS NULL"
        )
        .bind(token_hash(token))
        .bind(self.now_ms())
        .fetch_optional(p)
        .await?);
        Ok(row.map(|(user_id, csrf_token, expires_at_ms)| SessionInfo {
            user_id: UserId(user_id),
            csrf_token,
            expires_at_ms,
        }))
    }

    /// The caller behind a session token, with the session (for its CSRF token).
    pub async fn caller_for_session(&self, token: &str) -> Result<Option<(Caller, SessionInfo)>> {
        let Some(session) = self.authenticate_session(token).await? else {
            return Ok(None);
        };
        Ok(self
            .caller_for_user(&session.user_id)
            .await?
            .map(|caller| (caller, session)))
    }

    /// Ends a session; answers whether it existed.
    pub async fn logout(&self, token: &str) -> Result<bool> {
        let n = on_pool!(self, |p| sqlx::query(
            "DELETE FROM sessions WHERE token_hash = $1"
        )
        .bind(token_hash(token))
        .execute(p)
        .await?
        .rows_affected());
        Ok(n > 0)
    }

    /// Deletes expired sessions; answers how many.
    pub async fn purge_expired_sessions(&self) -> Result<u64> {
        let n = on_pool!(self, |p| sqlx::query(
            "DELETE FROM sessions WHERE expires_at_ms <= $1"
        )
        .bind(self.now_ms())
        .execute(p)
        .await?
        .rows_affected());
        Ok(n)
    }
}
