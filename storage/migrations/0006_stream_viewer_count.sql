-- Current viewer count of a live stream, refreshed by the flusher, for listings.
ALTER TABLE streams ADD COLUMN viewers integer NOT NULL DEFAULT 0;
