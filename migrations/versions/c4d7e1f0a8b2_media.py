"""Uploaded media: the prepared file, its thumbnail, and its upload to Plivo

Revision ID: c4d7e1f0a8b2
Revises: 9b3e5f1a2c64
Create Date: 2026-12-01 19:00:00

"""
from alembic import op
import sqlalchemy as sa

import webapp.models


revision = 'c4d7e1f0a8b2'
down_revision = '9b3e5f1a2c64'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('media',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('thumbnail', sa.LargeBinary(), nullable=True),
    sa.Column('original_name', sa.String(length=255), nullable=False),
    sa.Column('original_size', sa.Integer(), nullable=False),
    sa.Column('uploaded_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', webapp.models.UTCDateTime(), nullable=False),
    sa.Column('plivo_media_id', sa.String(length=64), nullable=True),
    sa.Column('plivo_uploaded_at', webapp.models.UTCDateTime(), nullable=True),
    sa.Column('uses', sa.Integer(), server_default='0', nullable=False),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'],
                            name=op.f('fk_media_uploaded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_media')),
    sa.UniqueConstraint('sha256', name=op.f('uq_media_sha256'))
    )
    with op.batch_alter_table('media', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_media_created_at'), ['created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('media', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_media_created_at'))
    op.drop_table('media')
