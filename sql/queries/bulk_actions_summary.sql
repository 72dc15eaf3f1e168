SELECT status, count(*) AS actions FROM bulk_actions WHERE account_id = $1 GROUP BY status
