"""Plivo's pace: sender numbers as Plivo's Number API describes them, sticky senders,
and on messages the instant before which they wait (a daily cap) and the message a
retry sends again (error 420).

Revision ID: 90592ad018b8
Revises: d8e9d96681ad
Create Date: 2026-12-07 21:56:50.284458

"""
from alembic import op
import sqlalchemy as sa

import webapp.models


# revision identifiers, used by Alembic.
revision = '90592ad018b8'
down_revision = 'd8e9d96681ad'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sender_numbers',
    sa.Column('number', sa.String(length=16), nullable=False),
    sa.Column('number_type', sa.String(length=32), nullable=True),
    sa.Column('country', sa.String(length=64), nullable=True),
    sa.Column('registration', sa.String(length=64), nullable=True),
    sa.Column('verification', sa.String(length=64), nullable=True),
    sa.Column('mms_enabled', sa.Boolean(), nullable=True),
    sa.Column('problem', sa.Text(), nullable=True),
    sa.Column('checked_at', webapp.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('number', name=op.f('pk_sender_numbers'))
    )
    op.create_table('sticky_senders',
    sa.Column('recipient', sa.String(length=16), nullable=False),
    sa.Column('sender', sa.String(length=16), nullable=False),
    sa.Column('assigned_at', webapp.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('recipient', name=op.f('pk_sticky_senders'))
    )
    # Plain ALTER TABLE ... ADD COLUMN on both databases (as for batch_id): a batch rebuild
    # of messages would take minutes on a large table and drop its search triggers.
    op.add_column('messages', sa.Column('not_before', webapp.models.base.UTCDateTime(timezone=True),
                                        nullable=True))
    if op.get_bind().dialect.name == 'sqlite':  # SQLite names the key only inline
        op.execute('ALTER TABLE messages ADD COLUMN retry_of_id INTEGER CONSTRAINT '
                   'fk_messages_retry_of_id_messages REFERENCES messages (id)')
    else:
        op.add_column('messages', sa.Column(
            'retry_of_id', sa.Integer(),
            sa.ForeignKey('messages.id', name=op.f('fk_messages_retry_of_id_messages')),
            nullable=True))
    op.create_index('uq_messages_retry_of_id', 'messages', ['retry_of_id'], unique=True)


def downgrade():
    op.drop_index('uq_messages_retry_of_id', table_name='messages')
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE messages DROP COLUMN retry_of_id')
    else:
        op.drop_constraint(op.f('fk_messages_retry_of_id_messages'), 'messages',
                           type_='foreignkey')
        op.drop_column('messages', 'retry_of_id')
    op.drop_column('messages', 'not_before')
    op.drop_table('sticky_senders')
    op.drop_table('sender_numbers')
