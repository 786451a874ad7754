"""The Coinbase public REST endpoints that ccxt's ``coinbase.load_markets()`` calls, for the simulated products.

``GET /api/v3/brokerage/market/products`` (spot products; ``product_type=FUTURE`` gives none),
``/v2/currencies`` (fiat), ``/v2/currencies/crypto`` and ``/v2/exchange-rates``. Only the fields ccxt reads and
the product fields that describe the simulated market are filled in; prices and volumes are not reported.
"""

from __future__ import annotations

import orjson
from aiohttp import web

FIAT = {"USD": "US Dollar", "EUR": "Euro", "GBP": "British Pound"}


def product_json(product) -> dict:
    """One product as ``/api/v3/brokerage/market/products`` lists it."""
    return {
        "product_id": product.symbol,
        "base_currency_id": product.base,
        "quote_currency_id": product.quote,
        "base_display_symbol": product.base,
        "quote_display_symbol": product.quote,
        "base_name": product.base,
        "quote_name": product.quote,
        "product_type": "SPOT",
        "status": "online",
        "trading_disabled": False,
        "is_disabled": False,
        "cancel_only": False,
        "limit_only": False,
        "post_only": False,
        "auction_mode": False,
        "base_increment": str(product.size_increment),
        "quote_increment": str(product.tick_size),
        "price_increment": str(product.tick_size),
        "base_min_size": str(product.min_size),
        "base_max_size": "100000000",
        "quote_min_size": "1",
        "quote_max_size": "100000000",
        "alias": "",
        "alias_to": [],
        "view_only": False,
        "new": False,
    }


class CoinbaseRest:
    """aiohttp routes answering ccxt's ``coinbase`` market loading for ``products``."""

    def __init__(self, products):
        self.products = list(products)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v3/brokerage/market/products", self.market_products)
        app.router.add_get("/v2/currencies", self.fiat_currencies)
        app.router.add_get("/v2/currencies/crypto", self.crypto_currencies)
        app.router.add_get("/v2/exchange-rates", self.exchange_rates)

    @staticmethod
    def _json(payload) -> web.Response:
        return web.Response(body=orjson.dumps(payload), content_type="application/json")

    async def market_products(self, request: web.Request) -> web.Response:
        ptype = request.query.get("product_type", "SPOT").upper()
        products = [product_json(p) for p in self.products] if ptype == "SPOT" else []
        return self._json({"products": products, "num_products": len(products)})

    def _fiat(self) -> list[str]:
        return sorted({p.quote for p in self.products if p.quote in FIAT} | {"USD"})

    async def fiat_currencies(self, request: web.Request) -> web.Response:
        return self._json({"data": [{"id": c, "name": FIAT[c], "min_size": "0.01"} for c in self._fiat()]})

    async def crypto_currencies(self, request: web.Request) -> web.Response:
        codes = sorted({p.base for p in self.products} | {p.quote for p in self.products if p.quote not in FIAT})
        data = [{"code": c, "name": c, "color": "#000000", "sort_index": i, "exponent": 8, "type": "crypto",
                 "address_regex": "", "asset_id": f"l2lab-{c.lower()}"} for i, c in enumerate(codes)]
        return self._json({"data": data})

    async def exchange_rates(self, request: web.Request) -> web.Response:
        currency = request.query.get("currency", "USD")
        return self._json({"data": {"currency": currency, "rates": {}}})
