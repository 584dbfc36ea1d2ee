"""The PETs Prize Challenge (financial crime track) file format, as data.

One place names every column, its type and the file layout, so that the loader, the
generator and the tests agree (see docs/data.md).
"""

from __future__ import annotations

from typing import Final

# Transactions file held by the payment network (client id `swift`), one row per message.
TRANSACTION_COLUMNS: Final[tuple[str, ...]] = (
    "MessageId",
    "UETR",
    "TransactionReference",
    "Timestamp",
    "Sender",
    "Receiver",
    "OrderingAccount",
    "OrderingName",
    "OrderingStreet",
    "OrderingCountryCityZip",
    "BeneficiaryAccount",
    "BeneficiaryName",
    "BeneficiaryStreet",
    "BeneficiaryCountryCityZip",
    "SettlementDate",
    "SettlementCurrency",
    "SettlementAmount",
    "InstructedCurrency",
    "InstructedAmount",
    "Label",
)
# Columns that a test-stage file may omit (predictions are made for it).
OPTIONAL_TRANSACTION_COLUMNS: Final[frozenset[str]] = frozenset({"Label"})
# Columns that must be present on every row (identity strings may be empty).
REQUIRED_NON_NULL: Final[tuple[str, ...]] = (
    "MessageId",
    "UETR",
    "Timestamp",
    "Sender",
    "Receiver",
    "SettlementDate",
    "SettlementCurrency",
    "SettlementAmount",
    "InstructedCurrency",
    "InstructedAmount",
)
NUMERIC_COLUMNS: Final[dict[str, str]] = {
    "SettlementDate": "int64",
    "SettlementAmount": "float64",
    "InstructedAmount": "float64",
    "Label": "int64",
}
TIMESTAMP_FORMAT: Final[str] = "%Y-%m-%d %H:%M:%S"
# SettlementDate is an integer yymmdd (e.g. 220103); years are 20yy.
SETTLEMENT_DATE_FORMAT: Final[str] = "yymmdd"

# Account records held by the banks.
ACCOUNT_COLUMNS: Final[tuple[str, ...]] = (
    "Bank",
    "Account",
    "Name",
    "Street",
    "CountryCityZip",
    "Flags",
)
FLAG_CODES: Final[dict[str, str]] = {
    "00": "none",
    "01": "account closed",
    "03": "account recently opened",
    "04": "name mismatch",
    "05": "account under monitoring",
    "06": "account suspended",
    "07": "account frozen",
    "08": "non-transaction account",
    "09": "beneficiary deceased",
    "10": "invalid company id",
    "11": "invalid individual id",
}

# Layout.
SCENARIOS_FILE: Final[str] = "scenarios.txt"
PARTITIONS_FILE: Final[str] = "partitions.json"
CENTRALIZED_DIR: Final[str] = "centralized"
CENTRALIZED_INDEX: Final[str] = "data.json"
STAGES: Final[tuple[str, ...]] = ("train", "test")
PNS_CLIENT_ID: Final[str] = "swift"
# partitions.json / data.json keys naming the files of a client.
SWIFT_PATH_KEY: Final[str] = "swift_data_path"
BANK_PATH_KEY: Final[str] = "bank_data_path"


def bank_client_id(index: int) -> str:
    """Client id of the index-th bank client, counting from 1: bank01, bank02, ..."""
    return f"bank{index:02d}"
