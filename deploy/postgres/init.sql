-- One database per service: each service owns its tables and nothing else
-- touches them.
CREATE DATABASE identity;
CREATE DATABASE catalog;
CREATE DATABASE quota;
CREATE DATABASE usage;
