DROP TABLE IF EXISTS legal_hold_items, legal_holds;
