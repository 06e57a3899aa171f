//! Groups and memberships.

use gateway_storage::page::Page;
use gateway_storage::{StorageError, now_micros};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::IdentityStore;
use super::changes::{Change, ChangeKind, record};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub description: String,
    /// Higher serves first when a user is in several groups.
    pub priority: i32,
    /// Opts in to the edge's completion cache.
    pub completion_cache: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct NewGroup<'a> {
    pub tenant_id: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub priority: i32,
    pub completion_cache: bool,
}

#[derive(Debug, Clone, Default)]
pub struct GroupUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub priority: Option<i32>,
    pub completion_cache: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub group_id: String,
    pub user_id: String,
    pub username: String,
    pub created_at: i64,
}

const COLUMNS: &str =
    "id, tenant_id, name, description, priority, completion_cache, created_at, updated_at";

fn group(row: &AnyRow) -> Result<Group, StorageError> {
    Ok(Group {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        priority: i32::try_from(row.try_get::<i64, _>("priority")?).unwrap_or(i32::MAX),
        completion_cache: gateway_storage::flag(row, "completion_cache")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl IdentityStore {
    pub async fn create_group(&self, new_group: NewGroup<'_>) -> Result<Group, StorageError> {
        let now = now_micros();
        let group = Group {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: new_group.tenant_id.to_owned(),
            name: new_group.name.to_owned(),
            description: new_group.description.to_owned(),
            priority: new_group.priority,
            completion_cache: new_group.completion_cache,
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO user_groups (id, tenant_id, name, description, priority, completion_cache, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&group.id)
        .bind(&group.tenant_id)
        .bind(&group.name)
        .bind(&group.description)
        .bind(group.priority)
        .bind(group.completion_cache)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(group)
    }

    pub async fn get_group(&self, id: &str) -> Result<Group, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM user_groups WHERE id = $1"
        )))
        .bind(id)
        .fetch_one(self.db.pool())
        .await?;
        group(&row)
    }

    pub async fn list_groups(
        &self,
        page: &Page,
        tenant_id: Option<&str>,
        user_id: Option<&str>,
    ) -> Result<Vec<Group>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM user_groups WHERE id > $1 AND ($2 = '' OR tenant_id = $2) \
             AND ($3 = '' OR id IN (SELECT group_id FROM group_members WHERE user_id = $3)) \
             ORDER BY id LIMIT $4"
        )))
        .bind(&page.after)
        .bind(super::optional(tenant_id))
        .bind(super::optional(user_id))
        .bind(page.fetch_limit())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(group).collect()
    }

    /// The user's groups, highest priority first (ties by name).
    pub async fn groups_of_user(&self, user_id: &str) -> Result<Vec<Group>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM user_groups WHERE id IN \
             (SELECT group_id FROM group_members WHERE user_id = $1) ORDER BY priority DESC, name"
        )))
        .bind(user_id)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(group).collect()
    }

    pub async fn is_member(&self, group_id: &str, user_id: &str) -> Result<bool, StorageError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM group_members WHERE group_id = $1 AND user_id = $2",
        )
        .bind(group_id)
        .bind(user_id)
        .fetch_one(self.db.pool())
        .await?;
        Ok(count > 0)
    }

    pub async fn update_group(
        &self,
        id: &str,
        update: &GroupUpdate,
    ) -> Result<Group, StorageError> {
        let mut transaction = self.begin().await?;
        let result = sqlx::query(
            "UPDATE user_groups SET name = COALESCE($2, name), description = COALESCE($3, description), \
             priority = COALESCE($4, priority), completion_cache = COALESCE($6, completion_cache), \
             updated_at = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(update.name.clone())
        .bind(update.description.clone())
        .bind(update.priority)
        .bind(now_micros())
        .bind(update.completion_cache)
        .execute(&mut *transaction)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        let tenant_id: String =
            sqlx::query_scalar("SELECT tenant_id FROM user_groups WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *transaction)
                .await?;
        record(
            &mut transaction,
            Change::new(ChangeKind::GroupUpdated, &tenant_id).group(id),
        )
        .await?;
        transaction.commit().await?;
        self.get_group(id).await
    }

    /// Deletes the group and its memberships; keys bound to it lose it.
    pub async fn delete_group(&self, id: &str) -> Result<(), StorageError> {
        let mut transaction = self.begin().await?;
        let tenant_id: Option<String> =
            sqlx::query_scalar("SELECT tenant_id FROM user_groups WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *transaction)
                .await?;
        let tenant_id = tenant_id.ok_or(StorageError::NotFound)?;
        for statement in [
            "UPDATE api_keys SET group_id = NULL WHERE group_id = $1",
            "DELETE FROM group_members WHERE group_id = $1",
            "DELETE FROM user_groups WHERE id = $1",
        ] {
            sqlx::query(statement)
                .bind(id)
                .execute(&mut *transaction)
                .await?;
        }
        record(
            &mut transaction,
            Change::new(ChangeKind::GroupDeleted, &tenant_id).group(id),
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Adds a membership; adding an existing one changes nothing.
    pub async fn add_member(&self, group: &Group, user_id: &str) -> Result<Member, StorageError> {
        let mut transaction = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO group_members (group_id, user_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (group_id, user_id) DO NOTHING",
        )
        .bind(&group.id)
        .bind(user_id)
        .bind(now_micros())
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() > 0 {
            let change = Change::new(ChangeKind::MembershipChanged, &group.tenant_id)
                .user(user_id)
                .group(&group.id);
            record(&mut transaction, change).await?;
        }
        transaction.commit().await?;
        self.member(&group.id, user_id).await
    }

    /// Removes a membership; removing a missing one changes nothing.
    pub async fn remove_member(&self, group: &Group, user_id: &str) -> Result<(), StorageError> {
        let mut transaction = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(&group.id)
            .bind(user_id)
            .execute(&mut *transaction)
            .await?;
        if deleted.rows_affected() > 0 {
            let change = Change::new(ChangeKind::MembershipChanged, &group.tenant_id)
                .user(user_id)
                .group(&group.id);
            record(&mut transaction, change).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn member(&self, group_id: &str, user_id: &str) -> Result<Member, StorageError> {
        let row = sqlx::query(
            "SELECT m.group_id, m.user_id, u.username, m.created_at FROM group_members m \
             JOIN users u ON u.id = m.user_id WHERE m.group_id = $1 AND m.user_id = $2",
        )
        .bind(group_id)
        .bind(user_id)
        .fetch_one(self.db.pool())
        .await?;
        member(&row)
    }

    /// Members ordered by user id (the page cursor).
    pub async fn list_members(
        &self,
        group_id: &str,
        page: &Page,
    ) -> Result<Vec<Member>, StorageError> {
        let rows = sqlx::query(
            "SELECT m.group_id, m.user_id, u.username, m.created_at FROM group_members m \
             JOIN users u ON u.id = m.user_id WHERE m.group_id = $1 AND m.user_id > $2 \
             ORDER BY m.user_id LIMIT $3",
        )
        .bind(group_id)
        .bind(&page.after)
        .bind(page.fetch_limit())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(member).collect()
    }
}

fn member(row: &AnyRow) -> Result<Member, StorageError> {
    Ok(Member {
        group_id: row.try_get("group_id")?,
        user_id: row.try_get("user_id")?,
        username: row.try_get("username")?,
        created_at: row.try_get("created_at")?,
    })
}
