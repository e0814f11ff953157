"""The site's Flower ClientApp: thin; the work is in :mod:`organfed.client.round`."""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from organfed.client.node import NodeConfig
from organfed.client.round import hello, train_round

app = ClientApp()


@app.query("hello")
def on_hello(msg: Message, context: Context) -> Message:
    return Message(hello(NodeConfig.for_node(dict(context.node_config), dict(context.run_config))), reply_to=msg)


@app.train()
def on_train(msg: Message, context: Context) -> Message:
    return Message(train_round(msg.content, NodeConfig.for_node(dict(context.node_config), dict(context.run_config))), reply_to=msg)
