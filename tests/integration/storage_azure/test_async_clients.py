"""The SDKs' async clients (aiohttp transport; the signed path goes through yarl) work too."""

from __future__ import annotations

import asyncio

import pytest

from .conftest import Endpoints

pytest.importorskip("aiohttp")


def test_async_queue_blob_and_table_clients(storage: Endpoints, unique: str) -> None:
    from azure.data.tables.aio import TableServiceClient
    from azure.storage.blob.aio import BlobServiceClient
    from azure.storage.queue.aio import QueueServiceClient

    async def scenario() -> None:
        cs = storage.connection_string()
        async with QueueServiceClient.from_connection_string(cs) as qs:
            queue = await qs.create_queue(unique + "-aq")
            await queue.send_message("async hello")
            got = [m async for m in queue.receive_messages()]
            assert [m.content for m in got] == ["async hello"]
            await queue.delete_message(got[0])
        async with BlobServiceClient.from_connection_string(cs) as bs:
            container = await bs.create_container(unique + "-ac")
            await container.upload_blob("dir/a name with spaces+plus.txt", b"data")
            stream = await container.download_blob("dir/a name with spaces+plus.txt")
            assert await stream.readall() == b"data"
            names = [b.name async for b in container.list_blobs()]
            assert names == ["dir/a name with spaces+plus.txt"]
        async with TableServiceClient.from_connection_string(cs) as ts:
            table = await ts.create_table(unique + "at")
            await table.create_entity({"PartitionKey": "p", "RowKey": "r'q", "v": 1})
            entity = await table.get_entity("p", "r'q")
            assert entity["v"] == 1
            rows = [e async for e in table.query_entities("v eq 1")]
            assert len(rows) == 1

    asyncio.run(scenario())
