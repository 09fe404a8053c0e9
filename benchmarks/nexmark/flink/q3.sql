-- Nexmark q3: local item suggestion — sellers in some states with auctions
-- in category 10 (a join of two streams; all rows are kept as state).
SELECT P.name, P.city, P.state, A.id
FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA');
