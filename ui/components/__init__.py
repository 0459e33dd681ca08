"""Building blocks shared by the pages: API session, forms, charts, job progress, errors."""
