-- Double-entry token ledger, after TigerBeetle's data model.
--
-- Every account keeps four running totals (debits/credits, pending/posted).
-- A user's wallet has debits_must_not_exceed_credits: the CHECK below makes an
-- overdraft impossible whatever code path writes, so spendable
-- (credits_posted - debits_posted - debits_pending) can never go negative.
-- Transfers are immutable, keyed by a client-chosen (or derived) idempotency
-- key; a pending transfer is resolved (post/void/expire) at most once, which a
-- unique index guarantees.

CREATE TABLE accounts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          integer REFERENCES users (id),
    kind             text NOT NULL CHECK (kind IN (
                        'wallet', 'earnings', 'frozen', 'receivable', 'payout_pending',
                        'platform_revenue', 'stripe_clearing', 'escrow', 'payouts_settled')),
    shard            smallint NOT NULL DEFAULT 0,
    debits_pending   bigint NOT NULL DEFAULT 0,
    debits_posted    bigint NOT NULL DEFAULT 0,
    credits_pending  bigint NOT NULL DEFAULT 0,
    credits_posted   bigint NOT NULL DEFAULT 0,
    debits_must_not_exceed_credits boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT totals_non_negative CHECK (
        debits_pending >= 0 AND debits_posted >= 0 AND credits_pending >= 0 AND credits_posted >= 0),
    CONSTRAINT no_overdraft CHECK (
        NOT debits_must_not_exceed_credits OR debits_pending + debits_posted <= credits_posted),
    CONSTRAINT owner_matches_kind CHECK (
        (user_id IS NULL) = (kind IN ('platform_revenue', 'stripe_clearing', 'escrow', 'payouts_settled')))
);
CREATE UNIQUE INDEX accounts_user_kind ON accounts (user_id, kind) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX accounts_system_kind ON accounts (kind, shard) WHERE user_id IS NULL;

-- System accounts. Hot ones are sharded so that concurrent money movements
-- for different users do not queue on one row lock.
INSERT INTO accounts (kind, shard, debits_must_not_exceed_credits)
SELECT 'platform_revenue', s, false FROM generate_series(0, 15) AS s;
INSERT INTO accounts (kind, shard, debits_must_not_exceed_credits)
SELECT 'escrow', s, true FROM generate_series(0, 15) AS s;
INSERT INTO accounts (kind, shard, debits_must_not_exceed_credits) VALUES
    ('stripe_clearing', 0, false),
    ('payouts_settled', 0, false);

CREATE TABLE transfers (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key               text NOT NULL,
    debit_account_id  bigint NOT NULL REFERENCES accounts (id),
    credit_account_id bigint NOT NULL REFERENCES accounts (id),
    amount            bigint NOT NULL CHECK (amount > 0),
    phase             text NOT NULL CHECK (phase IN ('single', 'pending', 'post', 'void', 'expire')),
    pending_id        bigint REFERENCES transfers (id),
    kind              text NOT NULL,
    reference         text NOT NULL DEFAULT '',
    timeout_at        timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT transfers_key UNIQUE (key),
    CONSTRAINT distinct_accounts CHECK (debit_account_id <> credit_account_id),
    CONSTRAINT resolution_links_pending CHECK (
        (phase IN ('post', 'void', 'expire')) = (pending_id IS NOT NULL)),
    CONSTRAINT pending_has_timeout CHECK ((phase = 'pending') = (timeout_at IS NOT NULL))
);
CREATE UNIQUE INDEX transfers_resolve_once ON transfers (pending_id) WHERE pending_id IS NOT NULL;
CREATE INDEX transfers_debit ON transfers (debit_account_id, id);
CREATE INDEX transfers_credit ON transfers (credit_account_id, id);
CREATE INDEX transfers_reference ON transfers (reference) WHERE reference <> '';

CREATE FUNCTION transfers_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'transfers are immutable (% on transfer %)', TG_OP, OLD.id;
END $$;
CREATE TRIGGER transfers_no_update BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION transfers_immutable();

-- Index of pending transfers not yet resolved (derived data: the expiry job
-- scans it; ledger verify checks it against the transfers).
CREATE TABLE open_holds (
    transfer_id      bigint PRIMARY KEY REFERENCES transfers (id),
    debit_account_id bigint NOT NULL REFERENCES accounts (id),
    amount           bigint NOT NULL CHECK (amount > 0),
    expires_at       timestamptz NOT NULL
);
CREATE INDEX open_holds_expiry ON open_holds (expires_at);
CREATE INDEX open_holds_account ON open_holds (debit_account_id);

-- Apply a batch of ledger operations in order, in the caller's transaction.
--
-- ops: 'transfer' | 'split' | 'pending' | 'post' | 'void' | 'expire'.
--   transfer: debit -> credit, amount.
--   split:    debit -> credit (amount - fee) under key, and debit -> fee_credit
--             (fee) under key || ':fee'; requires 0 <= fee < amount.
--   pending:  reserve amount (debit pending / credit pending) for timeout seconds.
--   post:     resolve pending_key, posting amount (0 < amount <= pending amount);
--             the rest is released.
--   void / expire: resolve pending_key, releasing all of it.
-- balancing: transfer/pending take min(amount, debit's spendable) instead of failing.
-- Status per op: ok | exists (same key, same fields: nothing done) | conflict
-- (same key, other fields) | insufficient | not_found | resolved | invalid.
CREATE FUNCTION ledger_apply(
    p_ops text[], p_keys text[], p_debits bigint[], p_credits bigint[], p_amounts bigint[],
    p_fees bigint[], p_fee_credits bigint[], p_kinds text[], p_refs text[],
    p_pending_keys text[], p_timeouts integer[], p_balancing boolean[]
) RETURNS TABLE (idx integer, status text, transfer_id bigint, amount bigint, debit_spendable bigint)
LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(array_length(p_ops, 1), 0);
    i integer;
    v_old transfers%ROWTYPE;
    v_pend transfers%ROWTYPE;
    v_id bigint;
    v_amt bigint;
    v_fee bigint;
    v_avail bigint;
    v_limited boolean;
    v_debit bigint;
    v_phase text;
BEGIN
    -- Lock every account the batch touches, in id order: concurrent batches
    -- (other nodes, the expiry job) then queue instead of deadlocking.
    PERFORM 1 FROM accounts a WHERE a.id IN (
        SELECT unnest(p_debits) UNION SELECT unnest(p_credits) UNION SELECT unnest(p_fee_credits)
        UNION SELECT t.debit_account_id FROM transfers t WHERE t.key = ANY (p_pending_keys)
        UNION SELECT t.credit_account_id FROM transfers t WHERE t.key = ANY (p_pending_keys)
    ) ORDER BY a.id FOR UPDATE;

    FOR i IN 1 .. n LOOP
        idx := i; status := 'ok'; transfer_id := NULL; amount := NULL; debit_spendable := NULL;
        v_phase := CASE p_ops[i] WHEN 'transfer' THEN 'single' WHEN 'split' THEN 'single'
                                 ELSE p_ops[i] END;

        SELECT * INTO v_old FROM transfers t WHERE t.key = p_keys[i];
        IF FOUND THEN
            IF p_ops[i] IN ('post', 'void', 'expire') THEN
                SELECT * INTO v_pend FROM transfers t WHERE t.key = p_pending_keys[i];
                status := CASE WHEN v_old.phase IN ('post', 'void', 'expire')
                                    AND v_old.pending_id IS NOT DISTINCT FROM v_pend.id
                                    AND (p_ops[i] <> 'post' OR v_old.amount = p_amounts[i])
                               THEN 'exists' ELSE 'conflict' END;
            ELSE
                status := CASE WHEN v_old.phase = v_phase
                                    AND v_old.debit_account_id = p_debits[i]
                                    AND v_old.credit_account_id = p_credits[i]
                                    AND v_old.kind = p_kinds[i]
                                    AND (p_balancing[i] OR v_old.amount =
                                         p_amounts[i] - coalesce(CASE WHEN p_ops[i] = 'split'
                                                                 THEN p_fees[i] END, 0))
                               THEN 'exists' ELSE 'conflict' END;
            END IF;
            transfer_id := v_old.id;
            amount := v_old.amount;
            SELECT a.credits_posted - a.debits_posted - a.debits_pending INTO debit_spendable
              FROM accounts a WHERE a.id = v_old.debit_account_id;
            RETURN NEXT;
            CONTINUE;
        END IF;

        IF p_ops[i] IN ('transfer', 'split', 'pending') THEN
            SELECT a.credits_posted - a.debits_posted - a.debits_pending, a.debits_must_not_exceed_credits
              INTO v_avail, v_limited FROM accounts a WHERE a.id = p_debits[i];
            IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = p_credits[i]) THEN
                status := 'not_found'; RETURN NEXT; CONTINUE;
            END IF;
            v_amt := p_amounts[i];
            v_fee := CASE WHEN p_ops[i] = 'split' THEN coalesce(p_fees[i], 0) ELSE 0 END;
            IF p_balancing[i] AND v_limited AND p_ops[i] <> 'split' THEN
                v_amt := least(v_amt, v_avail);
            END IF;
            debit_spendable := v_avail;
            IF v_amt IS NULL OR v_amt <= 0 OR v_fee < 0 OR v_fee >= v_amt
               OR (p_ops[i] = 'split' AND v_fee > 0 AND p_fee_credits[i] IS NULL) THEN
                status := CASE WHEN v_amt IS NOT NULL AND v_amt <= 0 AND p_amounts[i] > 0
                               THEN 'insufficient' ELSE 'invalid' END;
                RETURN NEXT; CONTINUE;
            END IF;
            IF v_limited AND v_amt > v_avail THEN
                status := 'insufficient'; RETURN NEXT; CONTINUE;
            END IF;

            IF p_ops[i] = 'pending' THEN
                UPDATE accounts a SET debits_pending = a.debits_pending + v_amt
                 WHERE a.id = p_debits[i]
                   AND (NOT a.debits_must_not_exceed_credits
                        OR a.debits_pending + a.debits_posted + v_amt <= a.credits_posted);
                IF NOT FOUND THEN status := 'insufficient'; RETURN NEXT; CONTINUE; END IF;
                UPDATE accounts a SET credits_pending = a.credits_pending + v_amt WHERE a.id = p_credits[i];
                INSERT INTO transfers (key, debit_account_id, credit_account_id, amount, phase, kind,
                                       reference, timeout_at)
                VALUES (p_keys[i], p_debits[i], p_credits[i], v_amt, 'pending', p_kinds[i],
                        coalesce(p_refs[i], ''),
                        now() + make_interval(secs => coalesce(p_timeouts[i], 3600)))
                RETURNING id INTO v_id;
                INSERT INTO open_holds (transfer_id, debit_account_id, amount, expires_at)
                SELECT v_id, p_debits[i], v_amt, t.timeout_at FROM transfers t WHERE t.id = v_id;
            ELSE
                UPDATE accounts a SET debits_posted = a.debits_posted + v_amt
                 WHERE a.id = p_debits[i]
                   AND (NOT a.debits_must_not_exceed_credits
                        OR a.debits_pending + a.debits_posted + v_amt <= a.credits_posted);
                IF NOT FOUND THEN status := 'insufficient'; RETURN NEXT; CONTINUE; END IF;
                UPDATE accounts a SET credits_posted = a.credits_posted + (v_amt - v_fee)
                 WHERE a.id = p_credits[i];
                INSERT INTO transfers (key, debit_account_id, credit_account_id, amount, phase, kind,
                                       reference)
                VALUES (p_keys[i], p_debits[i], p_credits[i], v_amt - v_fee, 'single', p_kinds[i],
                        coalesce(p_refs[i], ''))
                RETURNING id INTO v_id;
                IF v_fee > 0 THEN
                    UPDATE accounts a SET credits_posted = a.credits_posted + v_fee
                     WHERE a.id = p_fee_credits[i];
                    INSERT INTO transfers (key, debit_account_id, credit_account_id, amount, phase,
                                           kind, reference)
                    VALUES (p_keys[i] || ':fee', p_debits[i], p_fee_credits[i], v_fee, 'single',
                            'platform_fee', coalesce(p_refs[i], ''));
                END IF;
            END IF;
            v_debit := p_debits[i];
        ELSIF p_ops[i] IN ('post', 'void', 'expire') THEN
            SELECT * INTO v_pend FROM transfers t WHERE t.key = p_pending_keys[i] AND t.phase = 'pending';
            IF NOT FOUND THEN status := 'not_found'; RETURN NEXT; CONTINUE; END IF;
            IF EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = v_pend.id) THEN
                status := 'resolved'; transfer_id := v_pend.id; RETURN NEXT; CONTINUE;
            END IF;
            IF p_ops[i] = 'post' THEN
                v_amt := p_amounts[i];
                IF v_amt IS NULL OR v_amt <= 0 OR v_amt > v_pend.amount THEN
                    status := 'invalid'; RETURN NEXT; CONTINUE;
                END IF;
            ELSE
                v_amt := v_pend.amount;
            END IF;
            UPDATE accounts a
               SET debits_pending = a.debits_pending - v_pend.amount,
                   debits_posted = a.debits_posted + CASE WHEN p_ops[i] = 'post' THEN v_amt ELSE 0 END
             WHERE a.id = v_pend.debit_account_id;
            UPDATE accounts a
               SET credits_pending = a.credits_pending - v_pend.amount,
                   credits_posted = a.credits_posted + CASE WHEN p_ops[i] = 'post' THEN v_amt ELSE 0 END
             WHERE a.id = v_pend.credit_account_id;
            INSERT INTO transfers (key, debit_account_id, credit_account_id, amount, phase, pending_id,
                                   kind, reference)
            VALUES (p_keys[i], v_pend.debit_account_id, v_pend.credit_account_id, v_amt, p_ops[i],
                    v_pend.id, coalesce(p_kinds[i], v_pend.kind), v_pend.reference)
            RETURNING id INTO v_id;
            DELETE FROM open_holds h WHERE h.transfer_id = v_pend.id;
            v_debit := v_pend.debit_account_id;
        ELSE
            status := 'invalid'; RETURN NEXT; CONTINUE;
        END IF;

        transfer_id := v_id;
        amount := v_amt;
        SELECT a.credits_posted - a.debits_posted - a.debits_pending INTO debit_spendable
          FROM accounts a WHERE a.id = v_debit;
        RETURN NEXT;
    END LOOP;
END $$;
