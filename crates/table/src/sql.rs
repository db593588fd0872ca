//! `table.sql_query` and `table.sql_table`: tables in an SQLite database (maddy's, with the
//! `sqlite3` driver; PostgreSQL is not supported).
//!
//! `sql_table` is `sql_query` with generated queries over a two-column table, created if
//! missing, exactly as maddy does it, so an existing maddy `credentials.db` works as is.
//!
//! The connection is opened by `start` (which also checks every query) or by the first use, so
//! that `madmail creds` can use a table of a configuration that is not running. SQLite calls
//! are blocking: they run on tokio's blocking threads, one at a time per table.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use madmail_config::{Error, Node};
use madmail_module::decode::single;
use madmail_module::table::{MutableTable, Table, TableError};
use madmail_module::{
    Block, Built, Capabilities, Ctx, Definition, Errors, Kind, Lifecycle, ModuleSpec,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, Statement};

pub const SQL_QUERY_SPEC: ModuleSpec = ModuleSpec {
    name: "table.sql_query",
    kind: Kind::Named,
    build: build_sql_query,
    summary: "table answered by SQL queries on an SQLite database",
};

pub const SQL_TABLE_SPEC: ModuleSpec = ModuleSpec {
    name: "table.sql_table",
    kind: Kind::Named,
    build: build_sql_table,
    summary: "modifiable key/value table in an SQLite database",
};

/// How long a statement waits for another process (e.g. `madmail creds`) holding the lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn driver(n: &Node) -> Result<String, Error> {
    let value = single(n)?;
    match value {
        // maddy accepts both names (`sqlite` is the pure-Go driver's name for the same thing).
        "sqlite3" | "sqlite" => Ok(value.to_owned()),
        other => Err(Error::at(
            n.arg_pos(0),
            format!(
                "driver {other} is not supported: madmail's SQL tables use SQLite (driver sqlite3)"
            ),
        )),
    }
}

/// An SQL identifier interpolated into generated queries (maddy interpolates it as is).
fn identifier(n: &Node) -> Result<String, Error> {
    let value = single(n)?;
    let valid_part = |part: &str| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if value.split('.').count() <= 2 && value.split('.').all(valid_part) {
        Ok(value.to_owned())
    } else {
        Err(Error::at(
            n.arg_pos(0),
            format!(
                "{}: {value:?} is not a plain SQL name (letters, digits and _, optionally schema.name)",
                n.name
            ),
        ))
    }
}

fn build_sql_query(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut errors = crate::no_args(def).err().unwrap_or_default();
    let mut block = Block::new(def.node, ctx.globals());
    let driver = block.custom("driver", driver).required();
    let dsn = block.strings("dsn").required();
    let named_args = block.flag("named_args").default(false);
    let init = block.strings("init").optional().unwrap_or_default();
    let lookup = block.string("lookup").required();
    let add = block.string("add").optional();
    let list = block.string("list").optional();
    let set = block.string("set").optional();
    let del = block.string("del").optional();
    if let Err(e) = block.finish() {
        errors.extend(e);
    }
    errors.into_result(())?;
    let (Some(_), Some(dsn), Some(lookup)) = (driver, dsn, lookup) else {
        return Err(Errors::new()); // reported by `required`
    };
    let queries = Queries {
        lookup,
        add,
        list,
        set,
        del,
    };
    Ok(built(
        def,
        Database::new(&dsn.join(" "), init),
        queries,
        named_args,
    ))
}

fn build_sql_table(def: &Definition<'_>, ctx: &mut Ctx<'_>) -> Result<Built, Errors> {
    let mut errors = crate::no_args(def).err().unwrap_or_default();
    let mut block = Block::new(def.node, ctx.globals());
    let driver = block.custom("driver", driver).required();
    let dsn = block.strings("dsn").required();
    let table = block.custom("table_name", identifier).required();
    let key = block
        .custom("key_column", identifier)
        .default("key".to_owned());
    let value = block
        .custom("value_column", identifier)
        .default("value".to_owned());
    if let Err(e) = block.finish() {
        errors.extend(e);
    }
    errors.into_result(())?;
    let (Some(_), Some(dsn), Some(table)) = (driver, dsn, table) else {
        return Err(Errors::new()); // reported by `required`
    };
    // The queries and schema maddy's sql_table generates for sqlite3.
    let init = format!(
        "CREATE TABLE IF NOT EXISTS {table} ({key} TEXT PRIMARY KEY NOT NULL, {value} TEXT NOT NULL)"
    );
    let queries = Queries {
        lookup: format!("SELECT {value} FROM {table} WHERE {key} = :key"),
        add: Some(format!(
            "INSERT INTO {table}({key}, {value}) VALUES(:key, :value)"
        )),
        list: Some(format!("SELECT {key} FROM {table}")),
        set: Some(format!(
            "UPDATE {table} SET {value} = :value WHERE {key} = :key"
        )),
        del: Some(format!("DELETE FROM {table} WHERE {key} = :key")),
    };
    Ok(built(
        def,
        Database::new(&dsn.join(" "), vec![init]),
        queries,
        true,
    ))
}

fn built(def: &Definition<'_>, db: Database, queries: Queries, named_args: bool) -> Built {
    let mutable = queries.list.is_some()
        && queries.add.is_some()
        && queries.set.is_some()
        && queries.del.is_some();
    let table = Arc::new(SqlTable {
        db: Arc::new(db),
        queries: Arc::new(queries),
        named_args,
    });
    let mut caps = Capabilities::new().with::<dyn Table>(table.clone());
    if mutable {
        caps = caps.with::<dyn MutableTable>(table.clone());
    }
    tracing::debug!(module = def.module, instance = %def.label(), mutable, "SQL table configured");
    Built::new(caps).with_lifecycle(table)
}

struct Queries {
    lookup: String,
    add: Option<String>,
    list: Option<String>,
    set: Option<String>,
    del: Option<String>,
}

impl Queries {
    fn all(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.lookup.as_str()).chain(
            [&self.add, &self.list, &self.set, &self.del]
                .into_iter()
                .flatten()
                .map(String::as_str),
        )
    }
}

enum DbError {
    Other(String),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> DbError {
        DbError::Sql(e)
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Other(e) => f.write_str(e),
            DbError::Sql(e) => write!(f, "{e}"),
        }
    }
}

/// One SQLite database, opened on first use.
struct Database {
    /// What to open: a path (relative to the working directory), `:memory:` or a `file:` URI.
    target: String,
    /// Parameters of a maddy (go-sqlite3) DSN `path?_param=...` that SQLite does not know.
    ignored_params: Option<String>,
    init: Vec<String>,
    conn: Mutex<Option<Connection>>,
}

impl Database {
    fn new(dsn: &str, init: Vec<String>) -> Database {
        let (target, ignored_params) = match dsn.split_once('?') {
            Some((path, params)) if !dsn.starts_with("file:") => {
                (path.to_owned(), Some(params.to_owned()))
            }
            _ => (dsn.to_owned(), None),
        };
        Database {
            target,
            ignored_params,
            init,
            conn: Mutex::new(None),
        }
    }

    fn open(&self) -> Result<Connection, DbError> {
        if let Some(params) = &self.ignored_params {
            tracing::warn!(
                database = %self.target,
                params,
                "ignoring go-sqlite3 DSN parameters; use a file: URI for SQLite URI parameters"
            );
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.target, flags)
            .map_err(|e| DbError::Other(format!("can't open {}: {e}", self.target)))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        for query in &self.init {
            conn.execute_batch(query)
                .map_err(|e| DbError::Other(format!("init query failed: {e}")))?;
        }
        Ok(conn)
    }

    /// Runs `f` on the connection, on a blocking thread.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = db.conn.lock().unwrap_or_else(|e| e.into_inner());
            let conn = match guard.take() {
                Some(conn) => conn,
                None => db.open()?,
            };
            let result = f(&conn);
            *guard = Some(conn);
            result
        })
        .await
        .map_err(|e| DbError::Other(format!("database task failed: {e}")))?
    }

    async fn close(self: &Arc<Self>) {
        let db = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            db.conn.lock().unwrap_or_else(|e| e.into_inner()).take();
        })
        .await;
    }
}

struct SqlTable {
    db: Arc<Database>,
    queries: Arc<Queries>,
    named_args: bool,
}

/// Binds `key` (and `value`) to a statement: by name (`:key`, `@key` or `$key`) with named
/// arguments, else by position, where `$1`/`$2` (PostgreSQL style, as maddy's docs use) are
/// honoured whatever order they appear in.
fn bind(stmt: &mut Statement<'_>, named: bool, values: &[(&str, &str)]) -> rusqlite::Result<()> {
    for (position, (name, value)) in values.iter().enumerate() {
        let index = if named {
            let mut found = None;
            for prefix in [":", "@", "$"] {
                if let Some(i) = stmt.parameter_index(&format!("{prefix}{name}"))? {
                    found = Some(i);
                    break;
                }
            }
            found
        } else {
            match stmt.parameter_index(&format!("${}", position + 1))? {
                Some(i) => Some(i),
                None => (position < stmt.parameter_count()).then_some(position + 1),
            }
        };
        if let Some(index) = index {
            stmt.raw_bind_parameter(index, *value)?;
        }
    }
    Ok(())
}

fn text(value: ValueRef<'_>) -> Result<String, DbError> {
    Ok(match value {
        ValueRef::Text(t) | ValueRef::Blob(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(r) => r.to_string(),
        ValueRef::Null => return Err(DbError::Other("the query returned NULL".into())),
    })
}

impl SqlTable {
    fn error(&self, what: &str, key: Option<&str>, e: DbError) -> TableError {
        match key {
            Some(key) => TableError(format!("{}: {what} {key:?}: {e}", self.db.target)),
            None => TableError(format!("{}: {what}: {e}", self.db.target)),
        }
    }

    async fn query(&self, key: &str, first_only: bool) -> Result<Vec<String>, TableError> {
        let (queries, named, owned_key) = (self.queries.clone(), self.named_args, key.to_owned());
        self.db
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(&queries.lookup)?;
                bind(&mut stmt, named, &[("key", &owned_key)])?;
                let mut rows = stmt.raw_query();
                let mut values = Vec::new();
                while let Some(row) = rows.next()? {
                    values.push(text(row.get_ref(0)?)?);
                    if first_only {
                        break;
                    }
                }
                Ok(values)
            })
            .await
            .map_err(|e| self.error("lookup", Some(key), e))
    }

    fn mutation(&self, query: &Option<String>, name: &str) -> Result<String, TableError> {
        query.clone().ok_or_else(|| {
            TableError(format!(
                "{}: table is not modifiable (no {name} query)",
                self.db.target
            ))
        })
    }
}

#[async_trait]
impl Table for SqlTable {
    async fn lookup(&self, key: &str) -> Result<Option<String>, TableError> {
        Ok(self.query(key, true).await?.into_iter().next())
    }

    async fn lookup_multi(&self, key: &str) -> Result<Vec<String>, TableError> {
        self.query(key, false).await
    }
}

#[async_trait]
impl MutableTable for SqlTable {
    async fn keys(&self) -> Result<Vec<String>, TableError> {
        let list = self.mutation(&self.queries.list, "list")?;
        self.db
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(&list)?;
                let mut rows = stmt.raw_query();
                let mut keys = Vec::new();
                while let Some(row) = rows.next()? {
                    keys.push(text(row.get_ref(0)?)?);
                }
                Ok(keys)
            })
            .await
            .map_err(|e| self.error("list", None, e))
    }

    async fn set(&self, key: &str, value: &str) -> Result<(), TableError> {
        let add = self.mutation(&self.queries.add, "add")?;
        let set = self.mutation(&self.queries.set, "set")?;
        let (named, k, v) = (self.named_args, key.to_owned(), value.to_owned());
        self.db
            .run(move |conn| {
                let values = [("key", k.as_str()), ("value", v.as_str())];
                let mut insert = conn.prepare_cached(&add)?;
                bind(&mut insert, named, &values)?;
                match insert.raw_execute() {
                    Ok(_) => Ok(()),
                    // As maddy: an existing key is updated instead.
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == ErrorCode::ConstraintViolation =>
                    {
                        let mut update = conn.prepare_cached(&set)?;
                        bind(&mut update, named, &values)?;
                        update.raw_execute()?;
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            })
            .await
            .map_err(|e| self.error("set", Some(key), e))
    }

    async fn remove(&self, key: &str) -> Result<(), TableError> {
        let del = self.mutation(&self.queries.del, "del")?;
        let (named, k) = (self.named_args, key.to_owned());
        self.db
            .run(move |conn| {
                let mut stmt = conn.prepare_cached(&del)?;
                bind(&mut stmt, named, &[("key", &k)])?;
                stmt.raw_execute()?;
                Ok(())
            })
            .await
            .map_err(|e| self.error("remove", Some(key), e))
    }
}

#[async_trait]
impl Lifecycle for SqlTable {
    /// Opens the database, creates what `init` creates and checks every query, so that a
    /// mistake shows at start rather than at the first message.
    async fn start(&self) -> Result<(), String> {
        let queries = self.queries.clone();
        self.db
            .run(move |conn| {
                for query in queries.all() {
                    conn.prepare_cached(query)
                        .map_err(|e| DbError::Other(format!("invalid query {query:?}: {e}")))?;
                }
                Ok(())
            })
            .await
            .map_err(|e| format!("{}: {e}", self.db.target))
    }

    async fn stop(&self) {
        self.db.close().await;
    }
}
