"""Batches: sends to many, their drafts, and the opt-out list (numbers that replied STOP)

Revision ID: e29f54025b98
Revises: bd45f61815d1
Create Date: 2026-12-02 15:30:24.057943

"""
from alembic import op
import sqlalchemy as sa

import webapp.models


# revision identifiers, used by Alembic.
revision = 'e29f54025b98'
down_revision = 'bd45f61815d1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('opt_outs',
    sa.Column('number', sa.String(length=16), nullable=False),
    sa.Column('sender', sa.String(length=16), nullable=True),
    sa.Column('created_at', webapp.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('message_public_id', sa.String(length=24), nullable=True),
    sa.PrimaryKeyConstraint('number', name=op.f('pk_opt_outs'))
    )
    with op.batch_alter_table('opt_outs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_opt_outs_created_at'), ['created_at'], unique=False)

    op.create_table('batch_drafts',
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', webapp.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('sender', sa.String(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('media', sa.JSON(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_batch_drafts_created_by_id_users')),
    sa.PrimaryKeyConstraint('token', name=op.f('pk_batch_drafts'))
    )
    with op.batch_alter_table('batch_drafts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batch_drafts_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_batch_drafts_created_by_id'), ['created_by_id'], unique=False)

    op.create_table('batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=24), nullable=False),
    sa.Column('draft_token', sa.String(length=64), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', webapp.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('sender', sa.String(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('media', sa.JSON(), nullable=False),
    sa.Column('columns', sa.JSON(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('estimate_micros', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('approved_by_id', sa.Integer(), nullable=True),
    sa.Column('approved_at', webapp.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', webapp.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', webapp.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('pumped_at', webapp.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['approved_by_id'], ['users.id'], name=op.f('fk_batches_approved_by_id_users')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_batches_created_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batches')),
    sa.UniqueConstraint('draft_token', name=op.f('uq_batches_draft_token')),
    sa.UniqueConstraint('public_id', name=op.f('uq_batches_public_id'))
    )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batches_created_by_id'), ['created_by_id'], unique=False)
        batch_op.create_index('ix_batches_status_id', ['status', 'id'], unique=False)

    # Plain ALTER TABLE ... ADD COLUMN on both databases: a batch (copy-and-move) rebuild
    # of messages would take minutes on a large table and drop its search triggers.
    if op.get_bind().dialect.name == 'sqlite':  # SQLite names the key only inline
        op.execute('ALTER TABLE messages ADD COLUMN batch_id INTEGER CONSTRAINT '
                   'fk_messages_batch_id_batches REFERENCES batches (id)')
    else:
        op.add_column('messages', sa.Column(
            'batch_id', sa.Integer(),
            sa.ForeignKey('batches.id', name=op.f('fk_messages_batch_id_batches')),
            nullable=True))
    op.add_column('messages', sa.Column('fields', sa.JSON(), nullable=True))
    op.create_index('ix_messages_batch_status_id', 'messages', ['batch_id', 'status', 'id'],
                    unique=False)


def downgrade():
    op.drop_index('ix_messages_batch_status_id', table_name='messages')
    op.drop_column('messages', 'fields')
    if op.get_bind().dialect.name == 'sqlite':  # SQLite drops a referencing column natively
        op.execute('ALTER TABLE messages DROP COLUMN batch_id')
    else:
        op.drop_constraint(op.f('fk_messages_batch_id_batches'), 'messages', type_='foreignkey')
        op.drop_column('messages', 'batch_id')

    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_index('ix_batches_status_id')
        batch_op.drop_index(batch_op.f('ix_batches_created_by_id'))

    op.drop_table('batches')
    with op.batch_alter_table('batch_drafts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_batch_drafts_created_by_id'))
        batch_op.drop_index(batch_op.f('ix_batch_drafts_created_at'))

    op.drop_table('batch_drafts')
    with op.batch_alter_table('opt_outs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_opt_outs_created_at'))

    op.drop_table('opt_outs')
