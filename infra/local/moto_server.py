"""moto's server, with DynamoDB item operations isolated from each other as DynamoDB isolates them.

    .venv/bin/python infra/local/moto_server.py -H 127.0.0.1 -p 4566     # what moto.sh start runs

moto serves requests on threads, and its TransactWriteItems is not isolated: it deep-copies each table it
touches, applies the operations one by one, and on a failed condition restores the copies, wiping whatever
another request wrote to those tables in between. Two concurrent transactions (duplicate deliveries of one
order, two orders for one SKU) can then lose a committed write, which real DynamoDB never does
(transactions are serializable, single-item writes atomic). Here every item read and write of the DynamoDB
backend takes one lock, so each request sees and leaves a consistent state, across every process that
talks to this emulator (the local runtime's functions included), without any lock in the product code.
"""

from __future__ import annotations

import functools
import threading

from moto.dynamodb.models import DynamoDBBackend
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
# TransactGetItems is answered item by item in the response layer: one lock around the whole read.
DynamoHandler.transact_get_items = _isolated(DynamoHandler.transact_get_items)


if __name__ == "__main__":
    main()
