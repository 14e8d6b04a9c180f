"""``agora mcp``: every registered service as a Model Context Protocol tool, paid from the
user's wallet.

Built on the official ``mcp`` SDK's low-level ``Server`` (its ``MCPServer`` derives each
tool's schema from a Python signature; here the schemas come from the registry, so the
tools are listed by hand). ``tools/list`` lists the live services (optionally of one tag):
each tool is named after its service, described with its price, and carries the input schema
the service serves at ``<schema_url>/input.json``, kept only when its sha256 is the hash on
chain. ``tools/call`` checks the arguments against that schema (a schema error is a tool
error with code 3702, and nothing is paid), then calls the service through ``Client``: a
channel opened from the wallet, a voucher per call, the answer's signature checked, the
receipt kept. Served over stdio (``run_stdio``) or streamable HTTP (``run_http``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Any

import aiohttp
import mcp_types as types
import orjson
import uvicorn
from jsonschema import Draft202012Validator
from mcp.server import Server
from mcp.server.stdio import stdio_server

from agora.agents.client import Client, ServiceInfo
from agora.agents.errors import AgentError, ArgumentsInvalid, CallRefused
from agora.agents.schema import canonical_json
from agora.amounts import format_agr

log = logging.getLogger("agora.agents.mcp")
_TOOL_NAME = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class ToolEntry:
    name: str
    entry: dict[str, Any]
    input_schema: dict[str, Any]
    validator: Any


class McpBridge:
    """The registry as MCP tools (see the module docstring)."""

    def __init__(self, client: Client, *, tag: str | None = None) -> None:
        self.client = client
        self.tag = tag
        self.tools: dict[str, ToolEntry] = {}
        self.services: dict[str, ServiceInfo] = {}
        self._schemas: dict[bytes, dict[str, Any]] = {}
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def create_server(self) -> Server[Any]:
        return Server(
            "agora",
            version="1",
            instructions="Services of the Agora network, paid per call from your wallet.",
            on_list_tools=self.handle_list_tools,
            on_call_tool=self.handle_call_tool,
        )

    async def refresh(self) -> list[ToolEntry]:
        """Read the live services and their schemas into ``tools``."""
        entries = await self.client.node.list_services(tag=self.tag)
        tools: dict[str, ToolEntry] = {}
        for entry in entries:
            schema = await self._fetch_schema(entry)
            if schema is None:
                continue
            name = _TOOL_NAME.sub("-", entry["name"])[:48]
            if name in tools:
                name = f"{name}-{entry['id'][2:10]}"
            tools[name] = ToolEntry(name, entry, schema, Draft202012Validator(schema))
        self.tools = tools
        return list(tools.values())

    async def _fetch_schema(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        expected = bytes.fromhex(entry["input_schema_hash"][2:])
        if expected in self._schemas:
            return self._schemas[expected]
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with self._http.get(entry["schema_url"] + "/input.json") as response:
                schema = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as error:
            log.warning("service %s: no input schema: %s", entry["name"], error)
            return None
        if hashlib.sha256(canonical_json(schema)).digest() != expected:
            log.warning("service %s: its schema does not match the hash on chain", entry["name"])
            return None
        self._schemas[expected] = schema
        return dict(schema)

    async def handle_list_tools(
        self, ctx: Any, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tools = await self.refresh()
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=tool.name,
                    description=(
                        f"{tool.entry['description']} (Agora service {tool.entry['id']}, "
                        f"{format_agr(tool.entry['price']['amount'])} per "
                        f"{tool.entry['price']['unit']})"
                    ),
                    input_schema=tool.input_schema,
                )
                for tool in tools
            ]
        )

    async def handle_call_tool(
        self, ctx: Any, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            result = await self.call(params.name, dict(params.arguments or {}))
        except AgentError as error:
            code = error.remote_code if isinstance(error, CallRefused) else error.code
            return types.CallToolResult(
                content=[types.TextContent(text=f"error[{code}]: {error.message}")],
                is_error=True,
            )
        return types.CallToolResult(
            content=[types.TextContent(text=orjson.dumps(result).decode())],
            structured_content={"result": result},
        )

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """Check the arguments, then call and pay the service behind tool ``name``."""
        tool = self.tools.get(name)
        if tool is None:
            await self.refresh()
            tool = self.tools.get(name)
        if tool is None:
            raise CallRefused(f"no tool {name!r}", ArgumentsInvalid.code)
        if not tool.validator.is_valid(arguments):
            error = next(iter(tool.validator.iter_errors(arguments)))
            where = "/".join(str(p) for p in error.absolute_path) or "arguments"
            raise ArgumentsInvalid(f"{where}: {error.message}")
        service = self.services.get(tool.entry["id"])
        if service is None:
            service = await self.client.check_endpoint(tool.entry)
            self.services[tool.entry["id"]] = service
        return await self.client.call(service, arguments)


async def run_stdio(bridge: McpBridge) -> None:
    server = bridge.create_server()
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


async def run_http(bridge: McpBridge, host: str, port: int) -> None:
    """Streamable HTTP at ``http://host:port/mcp`` until cancelled."""
    app = bridge.create_server().streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, host=host
    )
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    await server.serve()
