"""Unmodified ccxt clients pointed at the loopback exchange (only URLs and markets are set).

* :func:`coinbase_pro` -- ``ccxt.pro.coinbase`` with ``urls['api']['ws']`` (and the REST URL) overridden and the
  simulated products installed with ``set_markets`` so that ``watch_*`` never needs REST. Pass
  ``load_markets_over_rest=True`` instead to leave markets unset: ``subscribe`` then calls ``load_markets``
  against the loopback's Coinbase REST endpoints.
* :func:`binanceusdm` / :func:`binanceusdm_async` -- ``ccxt.binanceusdm`` with *every* REST base URL pointed at
  the loopback (so nothing can reach a real venue); ``load_markets`` works through ``/fapi/v1/exchangeInfo``.
* :func:`coinbase_markets` -- ccxt market dicts for products, parsed by ccxt itself from the same product JSON
  the loopback's REST serves.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from loopback.coinbase_rest import product_json


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"refusing to point a client at {url!r}: the loopback exchange lives on 127.0.0.1")


def coinbase_markets(products) -> list[dict]:
    """ccxt market structures for ``products`` (``simulator.products.Product``), as ccxt's coinbase parses them."""
    import ccxt

    parser = ccxt.coinbase()
    return [parser.parse_spot_market(product_json(p), {}) for p in products]


def coinbase_pro(ws_url: str, products=None, *, rest_url: str | None = None, load_markets_over_rest: bool = False,
                 config: dict | None = None):
    """A ``ccxt.pro.coinbase`` client streaming from ``ws_url``. Close it with ``await client.close()``."""
    import ccxt.pro

    _check_loopback(ws_url)
    urls = {"api": {"ws": ws_url}}
    if rest_url is not None:
        _check_loopback(rest_url)
        urls["api"]["rest"] = rest_url
    client = ccxt.pro.coinbase({"urls": urls, **(config or {})})
    client.urls["api"]["ws"] = ws_url
    if rest_url is not None:
        client.urls["api"]["rest"] = rest_url
    elif load_markets_over_rest:
        raise ValueError("load_markets_over_rest needs rest_url")
    if not load_markets_over_rest:
        if products is None:
            raise ValueError("give the products to install with set_markets (or load_markets_over_rest=True)")
        client.set_markets(coinbase_markets(products))
    return client


def _binance_urls(client, rest_url: str) -> None:
    _check_loopback(rest_url)
    api = client.urls["api"]
    for key, url in list(api.items()):
        if isinstance(url, str):
            api[key] = rest_url.rstrip("/") + urlsplit(url).path
    for key in ("test", "demo"):
        client.urls.pop(key, None)


def binanceusdm(rest_url: str, config: dict | None = None):
    """A synchronous ``ccxt.binanceusdm`` client whose REST calls all go to ``rest_url``."""
    import ccxt

    client = ccxt.binanceusdm(config or {})
    _binance_urls(client, rest_url)
    return client


def binanceusdm_async(rest_url: str, config: dict | None = None):
    """An asyncio ``ccxt.async_support.binanceusdm`` client on ``rest_url``; ``await client.close()`` after use."""
    import ccxt.async_support

    client = ccxt.async_support.binanceusdm(config or {})
    _binance_urls(client, rest_url)
    return client
