"""Indexed history search: text index, reversed recipient digits, date-ordered filters

The history's "Text contains" and "Recipient" filters were LIKE '%…%' scans (2.7 s for a
rare word over a million messages). This adds what lets an index answer them:
- SQLite: an FTS5 table over messages.text, kept in step by triggers, filled from the
  existing rows; PostgreSQL: a GIN index on the same words.
- messages.recipient_reversed: the number's digits last first, indexed, so "ends in 0199"
  is a prefix range; filled here for existing rows.
- (status, created_at, id) and (created_by_id, created_at, id), so one status or one
  sender is walked newest first and stops after a page on both databases.

Revision ID: 4c8f1d2e7a90
Revises: b0f5a8957ae2
Create Date: 2026-12-01 11:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = '4c8f1d2e7a90'
down_revision = 'b0f5a8957ae2'
branch_labels = None
depends_on = None

# A copy, not an import: a migration must keep doing what it did when the model moves on.
SEARCH_DDL = {
    "sqlite": [
        "CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages', "
        "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
        "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END",
        "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
        "CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text); "
        "INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text); END",
        "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
    ],
    "postgresql": [
        # Accented Latin letters folded to their base letter (as FTS5's remove_diacritics
        # does), then everything but letters and digits made a space.
        "ALTER TABLE messages ADD COLUMN search_document tsvector GENERATED ALWAYS AS "
        "(to_tsvector('simple'::regconfig, regexp_replace(translate(text, 'ÀÁÂÃÄÅÇÈÉÊËÌÍÎÏÑÒÓÔÕÖÙÚÛÜÝàáâãäåçèéêëìíîïñòóôõöùúûüýÿĀāĂăĄąĆćĈĉĊċČčĎďĒēĔĕĖėĘęĚěĜĝĞğĠġĢģĤĥĨĩĪīĬĭĮįİĴĵĶķĹĺĻļĽľŃńŅņŇňŌōŎŏŐőŔŕŖŗŘřŚśŜŝŞşŠšŢţŤťŨũŪūŬŭŮůŰűŲųŴŵŶŷŸŹźŻżŽžƠơƯưǍǎǏǐǑǒǓǔǕǖǗǘǙǚǛǜǞǟǠǡǦǧǨǩǪǫǬǭǰǴǵǸǹǺǻȀȁȂȃȄȅȆȇȈȉȊȋȌȍȎȏȐȑȒȓȔȕȖȗȘșȚțȞȟȦȧȨȩȪȫȬȭȮȯȰȱȲȳ', 'AAAAAACEEEEIIIINOOOOOUUUUYaaaaaaceeeeiiiinooooouuuuyyAaAaAaCcCcCcCcDdEeEeEeEeEeGgGgGgGgHhIiIiIiIiIJjKkLlLlLlNnNnNnOoOoOoRrRrRrSsSsSsSsTtTtUuUuUuUuUuUuWwYyYZzZzZzOoUuAaIiOoUuUuUuUuUuAaAaGgKkOoOojGgNnAaAaAaEeEeIiIiOoOoRrRrUuUuSsTtHhAaEeOoOoOoOoYy'), '[^[:alnum:]]+', ' ', 'g'))) STORED",
        "CREATE INDEX ix_messages_text_search ON messages USING gin (search_document)",
    ],
}


def _fill_recipient_reversed() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("UPDATE messages SET recipient_reversed = "
                             "reverse(regexp_replace(recipient, '[^0-9]', '', 'g'))")
        return
    # SQLite has no reverse(): in Python, in batches of 5,000.
    last = 0
    update = sa.text("UPDATE messages SET recipient_reversed = :r WHERE id = :i")
    while True:
        rows = bind.execute(sa.text("SELECT id, recipient FROM messages WHERE id > :last "
                                    "ORDER BY id LIMIT 5000"), {"last": last}).all()
        if not rows:
            return
        bind.execute(update, [{"i": i, "r": "".join(c for c in (n or "") if c.isdigit())[::-1]}
                              for i, n in rows])
        last = rows[-1][0]


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recipient_reversed', sa.String(length=16), nullable=True))
        batch_op.drop_index('ix_messages_created_by_id')
        batch_op.drop_index('ix_messages_status_created_at')
    _fill_recipient_reversed()
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_recipient_reversed', ['recipient_reversed'], unique=False)
        batch_op.create_index('ix_messages_status_created_at_id', ['status', 'created_at', 'id'], unique=False)
        batch_op.create_index('ix_messages_created_by_created_at_id', ['created_by_id', 'created_at', 'id'], unique=False)
    # After the batch operations: SQLite's batch mode copies the table, which would leave
    # triggers pointing at the old one.
    for statement in SEARCH_DDL.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS messages_fts_{trigger}")
        op.execute("DROP TABLE IF EXISTS messages_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_messages_text_search")
        op.execute("ALTER TABLE messages DROP COLUMN IF EXISTS search_document")
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_created_by_created_at_id')
        batch_op.drop_index('ix_messages_status_created_at_id')
        batch_op.drop_index('ix_messages_recipient_reversed')
        batch_op.create_index('ix_messages_status_created_at', ['status', 'created_at'], unique=False)
        batch_op.create_index('ix_messages_created_by_id', ['created_by_id'], unique=False)
        batch_op.drop_column('recipient_reversed')

