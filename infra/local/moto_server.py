"""moto's server, with DynamoDB item operations isolated from each other as DynamoDB isolates them.

    .venv/bin/python infra/local/moto_server.py -H 127.0.0.1 -p 4566     # what moto.sh start runs

moto serves requests on threads, and its TransactWriteItems is not isolated: it deep-copies each table it
touches, applies the operations one by one, and on a failed condition restores the copies, wiping whatever
another request wrote to those tables in between. Two concurrent transactions (duplicate deliveries of one
order, two orders for one SKU) can then lose a committed write, which real DynamoDB never does
(transactions are serializable, single-item writes atomic). Here every item read and write of the DynamoDB
backend takes one lock, so each request sees and leaves a consistent state, across every process that
talks to this emulator (the local runtime's functions included), without any lock in the product code.

Two more departures from moto, both about memory (a CI run of the suite grew plain moto past 20 GB):
- a transaction keeps a copy of the items it touches, not of every table it touches: moto's whole-table
  deep copy (stream history included) per TransactWriteItems made each transaction cost the size of the
  table, and the copies piled up faster than Python returned them. Rollback restores those items and
  drops the stream records the transaction added, which is all the whole-table copy restored.
- a table's stream keeps its last STREAM_RECORDS_KEPT records, as DynamoDB Streams keeps 24 hours, not
  every record since the table was created. Nothing in the suite reads the stream.
"""

from __future__ import annotations

import copy
import functools
import threading

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import StreamShard, Table
from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_LOCK = threading.RLock()

# Every backend entry point that reads or writes items.
_ITEM_OPERATIONS = (
    "put_item",
    "get_item",
    "update_item",
    "delete_item",
    "query",
    "scan",
    "transact_write_items",
    "transact_get_items",
    "batch_get_item",
    "batch_write_item",
    "execute_statement",
    "execute_transaction",
    "batch_execute_statement",
)


def _isolated(method):
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _LOCK:
            return method(*args, **kwargs)

    return wrapper


for _name in _ITEM_OPERATIONS:
    setattr(DynamoDBBackend, _name, _isolated(getattr(DynamoDBBackend, _name)))
STREAM_RECORDS_KEPT = 1000


class _TablesByReference:
    """moto.dynamodb.models' `copy`, except that a Table is "copied" as itself: the transaction below
    snapshots items instead, and moto's restore of the "copy" is then a no-op."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


dynamodb_models.copy = _TablesByReference()
_moto_transact_write_items = DynamoDBBackend.transact_write_items


def _key_of(table, op_type, op):
    attrs = op["Item"] if op_type == "Put" else op.get("Key", {})
    hash_value = attrs.get(table.hash_key_attr)
    range_value = attrs.get(table.range_key_attr) if table.range_key_attr else None
    if hash_value is None:
        return None
    return DynamoType(hash_value), (DynamoType(range_value) if range_value is not None else None)


def _restore(table, hash_key, range_key, item):
    if range_key is not None:
        if item is None:
            table.items.get(hash_key, {}).pop(range_key, None)
        else:
            table.items[hash_key][range_key] = item
    elif item is None:
        table.items.pop(hash_key, None)
    else:
        table.items[hash_key] = item


def _transact_write_items(self, transact_items):
    touched = []  # (table, hash, range, the item before, or None)
    streams = {}  # table name -> records in its stream before
    for entry in transact_items:
        op_type, op = next(iter(entry.items()))
        table = self.tables.get(op.get("TableName")) if isinstance(op, dict) else None
        if table is None:
            continue
        key = _key_of(table, op_type, op)
        if key is None:
            continue
        before = table.get_item(*key)
        touched.append((table, key[0], key[1], copy.deepcopy(before) if before is not None else None))
        if table.stream_shard is not None:
            streams.setdefault(table.name, (table.stream_shard, len(table.stream_shard.items)))
    try:
        return _moto_transact_write_items(self, transact_items)
    except Exception:
        for table, hash_key, range_key, item in reversed(touched):
            _restore(table, hash_key, range_key, item)
        for shard, length in streams.values():
            del shard.items[length:]
        raise


DynamoDBBackend.transact_write_items = _isolated(_transact_write_items)

_moto_stream_add = StreamShard.add


def _bounded_stream_add(self, old, new):
    _moto_stream_add(self, old, new)
    excess = len(self.items) - STREAM_RECORDS_KEPT
    if excess > 0:
        del self.items[:excess]
        self.starting_sequence_number += excess


StreamShard.add = _bounded_stream_add

# TransactGetItems is answered item by item in the response layer: one lock around the whole read.
DynamoHandler.transact_get_items = _isolated(DynamoHandler.transact_get_items)


if __name__ == "__main__":
    main()
