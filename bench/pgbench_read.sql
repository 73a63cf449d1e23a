\set id random(1, 100000)
SELECT row_to_json(i)::text FROM items i WHERE i.id = :id;
