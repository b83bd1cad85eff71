"""Price one usage record: an exact integer of nano-units, or unpriced.

    pricer = Pricer(configs)
    pricer.price("heygen", "heygen::streaming-avatar", {"duration": 12.3})
    # Price(cost_nanos=20500000, currency='USD', source='unit')

Two kinds of pricing (docs/pricing.md):

- ``unit``: cost = sum of usage[field] * price / per over the priced fields, in the
  config's currency. A missing or ``None`` field counts as 0.
- ``genai_prices``: LLM token usage priced in USD with the bundled data of the
  ``genai-prices`` package (the ``llm`` extra), imported on first use, never updated from
  the network. Flat-rate models go through per-token rates worked out once per model; tiered
  and date- or time-dependent prices go through ``genai_prices.calc_price`` every time.

Amounts are exact rationals until one final rounding, half to even, to whole nano-units
(1e-9 of the currency). Prices are Decimals, and a float usage value counts as its shortest
repr (12.3 is 12.3, not 12.3000000000000007...). Pure: no I/O, no threads.

A record that cannot be priced gets ``UNPRICED`` and is stored without a cost, never
rejected: unknown config or service, no pricing, a value that is not a non-negative number
(bool is not a number), inconsistent token counts, a model genai-prices does not know, or
genai-prices not installed. ``Pricer.unpriced_reason`` says why for a service.
"""

from .exact import (
    NANOS_PER_UNIT,
    UNPRICED,
    Linear,
    Price,
    Tokens,
    exact,
    round_half_even,
    to_nanos,
)
from .pricer import Pricer, PricerLike, PriceRule
from .tokens import EXTRA_FIELDS, TOKEN_FIELDS, GenaiModel, extra_usage, token_usage

__all__ = [
    "EXTRA_FIELDS",
    "NANOS_PER_UNIT",
    "TOKEN_FIELDS",
    "UNPRICED",
    "GenaiModel",
    "Linear",
    "Price",
    "PriceRule",
    "Pricer",
    "PricerLike",
    "Tokens",
    "exact",
    "extra_usage",
    "round_half_even",
    "to_nanos",
    "token_usage",
]
