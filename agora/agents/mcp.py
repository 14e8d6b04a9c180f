"""``agora mcp``: every registered service as a Model Context Protocol tool, paid from the
user's wallet; with ``--gateway``, also the gateway's models (embeddings and chat).

Built on the official ``mcp`` SDK's low-level ``Server`` (its ``MCPServer`` derives each
tool's schema from a Python signature; here the schemas come from the registry, so the
tools are listed by hand). ``tools/list`` lists the live services (optionally of one tag):
each tool is named after its service, described with its price, and carries the input schema
the service serves at ``<schema_url>/input.json``, kept only when its sha256 is the hash on
chain. ``tools/call`` checks the arguments against that schema (a schema error is a tool
error with code 3702, and nothing is paid), then calls the service through ``Client``: a
channel opened from the wallet, a voucher per call, the answer's signature checked, the
receipt kept. A gateway model's tool is an OpenAI API call to the user's own gateway, which
pays the miners from its wallet; the answer carries the gateway's receipt. Served over stdio
(``run_stdio``) or streamable HTTP (``run_http``).
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
from agora.agents.errors import AgentError, ArgumentsInvalid, CallRefused, GatewayRefused
from agora.agents.schema import canonical_json
from agora.amounts import format_agr

log = logging.getLogger("agora.agents.mcp")
_TOOL_NAME = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True, slots=True)
class ToolEntry:
    """A tool: a registered service (``entry`` is its record), or a gateway model (``entry``
    is the gateway's model object, ``task`` its kind)."""

    name: str
    entry: dict[str, Any]
    input_schema: dict[str, Any]
    validator: Any
    description: str
    task: str = ""


EMBED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    },
    "required": ["input"],
    "additionalProperties": False,
}
CHAT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string"},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 512},
    },
    "required": ["prompt"],
    "additionalProperties": False,
}
GATEWAY_TOOLS = {"embedding": ("embed", EMBED_SCHEMA), "generation": ("chat", CHAT_SCHEMA)}


class McpBridge:
    """The registry as MCP tools (see the module docstring)."""

    def __init__(
        self, client: Client, *, tag: str | None = None, gateway_url: str | None = None
    ) -> None:
        self.client = client
        self.tag = tag
        self.gateway_url = None if gateway_url is None else gateway_url.rstrip("/")
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
        """Read the live services and their schemas (and the gateway's models) into ``tools``."""
        entries = await self.client.node.list_services(tag=self.tag)
        tools: dict[str, ToolEntry] = {}
        for entry in entries:
            schema = await self._fetch_schema(entry)
            if schema is None:
                continue
            name = _TOOL_NAME.sub("-", entry["name"])[:48]
            if name in tools:
                name = f"{name}-{entry['id'][2:10]}"
            description = (
                f"{entry['description']} (Agora service {entry['id']}, "
                f"{format_agr(entry['price']['amount'])} per {entry['price']['unit']})"
            )
            validator = Draft202012Validator(schema)
            tools[name] = ToolEntry(name, entry, schema, validator, description)
        for tool in await self._gateway_tools():
            tools.setdefault(tool.name, tool)
        self.tools = tools
        return list(tools.values())

    async def _gateway_tools(self) -> list[ToolEntry]:
        """A tool per model the gateway sells (embeddings and chat), paid by the gateway from
        the wallet it runs with."""
        if self.gateway_url is None:
            return []
        try:
            async with self._session().get(self.gateway_url + "/models") as response:
                models = orjson.loads(await response.read())["data"]
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, KeyError) as error:
            log.warning("the gateway's models are not listed: %s", error)
            return []
        tools = []
        for model in models:
            task = model.get("agora", {}).get("task", "")
            if task not in GATEWAY_TOOLS:
                continue
            verb, schema = GATEWAY_TOOLS[task]
            name = _TOOL_NAME.sub("-", f"{verb}-{model['id']}")[:64]
            description = f"{verb} with {model['id']} through the Agora gateway, paid per request"
            validator = Draft202012Validator(schema)
            tools.append(ToolEntry(name, model, schema, validator, description, task))
        return tools

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        return self._http

    async def _fetch_schema(self, entry: dict[str, Any]) -> dict[str, Any] | None:
        expected = bytes.fromhex(entry["input_schema_hash"][2:])
        if expected in self._schemas:
            return self._schemas[expected]
        try:
            async with self._session().get(entry["schema_url"] + "/input.json") as response:
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
                    name=tool.name, description=tool.description, input_schema=tool.input_schema
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
        if tool.task:
            return await self._call_gateway(tool, arguments)
        service = self.services.get(tool.entry["id"])
        if service is None:
            service = await self.client.check_endpoint(tool.entry)
            self.services[tool.entry["id"]] = service
        return await self.client.call(service, arguments)

    async def _call_gateway(self, tool: ToolEntry, arguments: dict[str, Any]) -> Any:
        """An OpenAI API call to the gateway; its answer with the gateway's receipt
        (``usage.agora``: request id, cost, the miners paid)."""
        if tool.task == "embedding":
            path, body = "/embeddings", {"model": tool.entry["id"], "input": arguments["input"]}
        else:
            messages = [{"role": "user", "content": arguments["prompt"]}]
            body = {"model": tool.entry["id"], "messages": messages}
            body["max_tokens"] = arguments.get("max_tokens", 64)
        async with self._session().post(f"{self.gateway_url}{path}", json=body) as response:
            answer = orjson.loads(await response.read())
            status = response.status
        if status != 200:
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            code = error.get("agora_code", GatewayRefused.code)
            raise CallRefused(f"the gateway refused: {error.get('message', status)}", int(code))
        usage = answer.get("usage", {})
        if tool.task == "embedding":
            vectors = [item["embedding"] for item in answer["data"]]
            return {"embeddings": vectors, "receipt": usage.get("agora")}
        text = answer["choices"][0]["message"]["content"]
        return {"text": text, "receipt": usage.get("agora")}


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
