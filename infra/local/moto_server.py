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

And one about what DynamoDB reports: moto answers ReturnConsumedCapacity with a fixed 1 (0.5 for
GetItem) whatever the item, and nothing for TransactWriteItems. Here the units follow DynamoDB's
documented rules (Read/write capacity mode, "Item sizes and formats"): a write is one unit per started
KB of the larger of the item before and after; a read one unit per started 4 KB (half for an eventually
consistent read; a query or scan adds its items' sizes first); a transaction doubles each item's units.
The bench's cost per order is counted from these.
"""

from __future__ import annotations

import copy
import functools
import math
import threading

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, bytesize
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


def _json_item_size(item):
    """An item's size as DynamoDB counts it: attribute names plus values (item in DynamoDB JSON)."""
    return sum(bytesize(name) + DynamoType(value).size() for name, value in (item or {}).items())


def _stored_size(backend, table_name, key):
    try:
        item = backend.get_item(table_name, key)
    except Exception:
        return 0
    return item.size() if item is not None else 0


def _write_units(size):
    return max(1, math.ceil(size / 1024))


def _read_units(size, consistent):
    units = max(1, math.ceil(size / 4096))
    return float(units) if consistent else units / 2


def _key_from_item(backend, table_name, item):
    table = backend.get_table(table_name)
    key = {table.hash_key_attr: item[table.hash_key_attr]}
    if table.range_key_attr:
        key[table.range_key_attr] = item[table.range_key_attr]
    return key


def _write_op_size(backend, op_type, op, before):
    """The size a write is billed on: the larger of the item before and after."""
    table_name = op["TableName"]
    if op_type == "Put":
        after = _json_item_size(op["Item"])
    elif op_type == "Update":
        after = _stored_size(backend, table_name, op["Key"])
    else:  # Delete, ConditionCheck
        after = 0
    return max(before, after)


def _capacity(table_units, kind):
    entries = []
    for table, units in table_units.items():
        entry = {"TableName": table, "CapacityUnits": units}
        entry[kind] = units
        entries.append(entry)
    return entries


def _set_capacity(handler, result, entries, as_list):
    if handler.body.get("ReturnConsumedCapacity", "NONE") == "NONE" or not isinstance(result.result, dict):
        return
    if as_list:
        result.result["ConsumedCapacity"] = entries
    elif entries:
        result.result["ConsumedCapacity"] = entries[0]


def _single_write(op_type):
    def patch(method):
        @functools.wraps(method)
        def wrapper(self):
            body = self.body
            with _LOCK:
                key = body.get("Key") or _key_from_item(self.dynamodb_backend, body["TableName"], body["Item"])
                before = _stored_size(self.dynamodb_backend, body["TableName"], key)
                result = method(self)
                size = _write_op_size(self.dynamodb_backend, op_type, body, before)
            units = {body["TableName"]: float(_write_units(size))}
            _set_capacity(self, result, _capacity(units, "WriteCapacityUnits"), as_list=False)
            return result

        return wrapper

    return patch


def _single_read(items_of):
    def patch(method):
        @functools.wraps(method)
        def wrapper(self):
            result = method(self)
            body = self.body
            size = sum(_json_item_size(i) for i in items_of(result.result))
            units = {body["TableName"]: _read_units(size, bool(body.get("ConsistentRead")))}
            _set_capacity(self, result, _capacity(units, "ReadCapacityUnits"), as_list=False)
            return result

        return wrapper

    return patch


def _transact_write(method):
    @functools.wraps(method)
    def wrapper(self):
        backend = self.dynamodb_backend
        with _LOCK:
            ops = []
            for entry in self.body["TransactItems"]:
                op_type, op = next(iter(entry.items()))
                key = op.get("Key") or _key_from_item(backend, op["TableName"], op["Item"])
                ops.append((op_type, op, _stored_size(backend, op["TableName"], key)))
            result = method(self)
            units = {}
            for op_type, op, before in ops:
                size = _write_op_size(backend, op_type, op, before)
                units[op["TableName"]] = units.get(op["TableName"], 0.0) + 2.0 * _write_units(size)
        _set_capacity(self, result, _capacity(units, "WriteCapacityUnits"), as_list=True)
        return result

    return wrapper


def _batch_write(method):
    @functools.wraps(method)
    def wrapper(self):
        backend = self.dynamodb_backend
        with _LOCK:
            ops = []
            for table_name, requests in self.body["RequestItems"].items():
                for request in requests:
                    op_type, op = next(iter(request.items()))
                    op = dict(op, TableName=table_name)
                    key = op.get("Key") or _key_from_item(backend, table_name, op["Item"])
                    ops.append(("Put" if op_type == "PutRequest" else "Delete", op, _stored_size(backend, table_name, key)))
            result = method(self)
            units = {}
            for op_type, op, before in ops:
                size = _write_op_size(backend, op_type, op, before)
                units[op["TableName"]] = units.get(op["TableName"], 0.0) + _write_units(size)
        _set_capacity(self, result, _capacity(units, "WriteCapacityUnits"), as_list=True)
        return result

    return wrapper


def _batch_get(method):
    @functools.wraps(method)
    def wrapper(self):
        result = method(self)
        units = {}
        responses = result.result.get("Responses", {}) if isinstance(result.result, dict) else {}
        for table_name, items in responses.items():
            consistent = bool(self.body["RequestItems"].get(table_name, {}).get("ConsistentRead"))
            units[table_name] = sum(_read_units(_json_item_size(i), consistent) for i in items)
        _set_capacity(self, result, _capacity(units, "ReadCapacityUnits"), as_list=True)
        return result

    return wrapper


DynamoHandler.put_item = _single_write("Put")(DynamoHandler.put_item)
DynamoHandler.update_item = _single_write("Update")(DynamoHandler.update_item)
DynamoHandler.delete_item = _single_write("Delete")(DynamoHandler.delete_item)
DynamoHandler.get_item = _single_read(lambda r: [r["Item"]] if isinstance(r, dict) and r.get("Item") else [])(
    DynamoHandler.get_item
)
DynamoHandler.query = _single_read(lambda r: r.get("Items", []) if isinstance(r, dict) else [])(DynamoHandler.query)
DynamoHandler.scan = _single_read(lambda r: r.get("Items", []) if isinstance(r, dict) else [])(DynamoHandler.scan)
DynamoHandler.transact_write_items = _transact_write(DynamoHandler.transact_write_items)
DynamoHandler.batch_write_item = _batch_write(DynamoHandler.batch_write_item)
DynamoHandler.batch_get_item = _batch_get(DynamoHandler.batch_get_item)


if __name__ == "__main__":
    main()
