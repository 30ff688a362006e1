-- Every commit that wrote audit entries notifies 'agentgw_audit' (delivered at commit, once
-- per transaction): each node's follower of the audit log wakes at once instead of at its
-- next poll.
CREATE FUNCTION agentgw_audit_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('agentgw_audit', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER audit_notify AFTER INSERT ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION agentgw_audit_notify();
