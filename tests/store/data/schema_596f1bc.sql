-- The state database as sigd 596f1bc (2026-12-07) created it: PRAGMA user_version 1.
-- Made by running that commit's Store on an empty file and dumping sqlite_master:
--   git archive 596f1bc daemon | tar -x -C DIR && cd DIR && python -c "from daemon.store import Store; Store('x.sqlite')"
--   sqlite3 x.sqlite .schema
PRAGMA user_version = 1;
CREATE TABLE "bars" (
   "symbol" TEXT NOT NULL,
   "timeframe" TEXT NOT NULL,
   "ts" INTEGER NOT NULL,
   "open" REAL,
   "high" REAL,
   "low" REAL,
   "close" REAL,
   "volume" REAL,
   PRIMARY KEY ("symbol", "timeframe", "ts")
);
CREATE TABLE "predictions" (
   "id" INTEGER PRIMARY KEY NOT NULL,
   "symbol" TEXT,
   "bar_ts" INTEGER,
   "model" TEXT,
   "version" TEXT,
   "scores" TEXT,
   "side" INTEGER,
   "confidence" REAL,
   "threshold" REAL,
   "inference_ms" REAL,
   "created_ms" INTEGER
);
CREATE TABLE "signals" (
   "id" INTEGER PRIMARY KEY NOT NULL,
   "symbol" TEXT,
   "bar_ts" INTEGER,
   "strategy" TEXT,
   "side" INTEGER,
   "confidence" REAL,
   "price" REAL,
   "reasons" TEXT,
   "model_versions" TEXT,
   "latency_ms" REAL,
   "created_ms" INTEGER,
   "event_id" TEXT
);
CREATE TABLE "orders" (
   "client_order_id" TEXT PRIMARY KEY NOT NULL,
   "symbol" TEXT,
   "side" TEXT,
   "type" TEXT,
   "amount" REAL,
   "price" REAL,
   "bar_ts" INTEGER,
   "status" TEXT,
   "exchange_id" TEXT,
   "error" TEXT,
   "created_ms" INTEGER,
   "updated_ms" INTEGER,
   "not_before_ts" INTEGER
);
CREATE TABLE "fills" (
   "id" INTEGER PRIMARY KEY NOT NULL,
   "client_order_id" TEXT,
   "symbol" TEXT,
   "side" TEXT,
   "price" REAL,
   "amount" REAL,
   "fee" REAL,
   "ts" INTEGER,
   "event_id" TEXT
);
CREATE TABLE "positions" (
   "symbol" TEXT PRIMARY KEY NOT NULL,
   "amount" REAL,
   "entry_price" REAL,
   "realized_pnl" REAL,
   "fees" REAL,
   "updated_ms" INTEGER
);
CREATE TABLE "outbox" (
   "id" TEXT PRIMARY KEY NOT NULL,
   "event_id" TEXT,
   "channel" TEXT,
   "type" TEXT,
   "payload" TEXT,
   "status" TEXT,
   "attempts" INTEGER,
   "next_attempt_ms" INTEGER,
   "last_error" TEXT,
   "created_ms" INTEGER,
   "sent_ms" INTEGER
);
CREATE TABLE "models" (
   "id" INTEGER PRIMARY KEY NOT NULL,
   "name" TEXT,
   "version" TEXT,
   "path" TEXT,
   "status" TEXT,
   "metrics" TEXT,
   "created_ms" INTEGER
);
CREATE TABLE "kv" (
   "key" TEXT PRIMARY KEY NOT NULL,
   "value" TEXT
);
CREATE TABLE "decisions" (
   "symbol" TEXT NOT NULL,
   "timeframe" TEXT NOT NULL,
   "bar_ts" INTEGER NOT NULL,
   "reason" TEXT,
   "detail" TEXT,
   "signals" INTEGER,
   "created_ms" INTEGER,
   PRIMARY KEY ("symbol", "timeframe", "bar_ts")
);
CREATE INDEX "idx_predictions_bar_ts"
    ON "predictions" ("bar_ts");
CREATE INDEX "idx_signals_bar_ts"
    ON "signals" ("bar_ts");
CREATE INDEX "idx_orders_status"
    ON "orders" ("status");
CREATE INDEX "idx_fills_client_order_id"
    ON "fills" ("client_order_id");
CREATE INDEX "idx_outbox_channel_status_next_attempt_ms"
    ON "outbox" ("channel", "status", "next_attempt_ms");
CREATE INDEX "idx_models_name_status"
    ON "models" ("name", "status");
CREATE UNIQUE INDEX [uq_predictions_symbol_model_bar_ts] ON [predictions] (symbol, model, bar_ts);
CREATE UNIQUE INDEX [uq_signals_symbol_strategy_bar_ts] ON [signals] (symbol, strategy, bar_ts);
