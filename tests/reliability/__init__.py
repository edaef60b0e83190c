"""The reliability campaign (``make reliability``): SIGKILLs, faults and continuous writes
against real runs, then a row-by-row comparison of the warehouse with the sources."""
