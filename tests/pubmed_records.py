"""PubMed XML records written for the tests: articles and book chapters by PMID and revision,
deletions, files."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path

DOCTYPE = (
    '<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    '"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">'
)


def _date(tag: str, yyyymmdd: str) -> str:
    return (
        f"<{tag}><Year>{yyyymmdd[:4]}</Year><Month>{yyyymmdd[4:6]}</Month>"
        f"<Day>{yyyymmdd[6:]}</Day></{tag}>"
    )


def medline_citation(
    pmid: int | str, title: str | None = None, revised: str = "20200101", version: int = 1
) -> str:
    """A ``MedlineCitation`` with a title, an abstract, an author and MeSH terms; ``version``
    is its PMID's."""
    title = title or f"Test citation {pmid} on remyelination in multiple sclerosis."
    return (
        f'<MedlineCitation Status="MEDLINE" Owner="NLM"><PMID Version="{version}">{pmid}</PMID>'
        f"{_date('DateCompleted', '20030402')}{_date('DateRevised', revised)}"
        '<Article PubModel="Print"><Journal><ISSN IssnType="Print">0022-510X</ISSN>'
        '<JournalIssue CitedMedium="Print"><Volume>206</Volume><Issue>2</Issue>'
        "<PubDate><Year>2003</Year><Month>Feb</Month><Day>15</Day></PubDate></JournalIssue>"
        "<Title>Journal of the neurological sciences</Title></Journal>"
        f"<ArticleTitle>{title}</ArticleTitle>"
        "<Pagination><MedlinePgn>123-30</MedlinePgn></Pagination>"
        "<Abstract><AbstractText>Intravenous immunoglobulin (IVIG) has several effects on "
        "the immune system.</AbstractText></Abstract>"
        '<AuthorList CompleteYN="Y"><Author ValidYN="Y"><LastName>Sorensen</LastName>'
        "<ForeName>Per Soelberg</ForeName><Initials>PS</Initials></Author></AuthorList>"
        "<Language>eng</Language><PublicationTypeList><PublicationType>Journal Article"
        "</PublicationType></PublicationTypeList></Article>"
        "<MedlineJournalInfo><Country>Netherlands</Country><MedlineTA>J Neurol Sci</MedlineTA>"
        "<NlmUniqueID>0375403</NlmUniqueID></MedlineJournalInfo>"
        '<MeshHeadingList><MeshHeading><DescriptorName MajorTopicYN="N">Humans'
        "</DescriptorName></MeshHeading></MeshHeadingList></MedlineCitation>"
    )


def pubmed_article(
    pmid: int | str, title: str | None = None, revised: str = "20200101", version: int = 1
) -> str:
    """A ``PubmedArticle``: the citation and its ``PubmedData`` (history, ids, status)."""
    return (
        f"<PubmedArticle>{medline_citation(pmid, title, revised, version)}<PubmedData><History>"
        '<PubMedPubDate PubStatus="pubmed"><Year>2003</Year><Month>2</Month><Day>1</Day>'
        "<Hour>4</Hour><Minute>0</Minute></PubMedPubDate></History>"
        "<PublicationStatus>ppublish</PublicationStatus><ArticleIdList>"
        f'<ArticleId IdType="pubmed">{pmid}</ArticleId>'
        f'<ArticleId IdType="doi">10.1016/test.{pmid}</ArticleId>'
        "</ArticleIdList></PubmedData></PubmedArticle>"
    )


def pubmed_book_article(
    pmid: int | str, title: str | None = None, revised: str = "20200101", version: int = 1
) -> str:
    """A ``PubmedBookArticle``: a chapter of a book, revised (``DateRevised``) on ``revised``;
    a book has no ``DateCompleted``."""
    title = title or f"Test chapter {pmid} on alpha-thalassemia."
    return (
        f'<PubmedBookArticle><BookDocument><PMID Version="{version}">{pmid}</PMID>'
        '<ArticleIdList><ArticleId IdType="bookaccession">NBK1116</ArticleId></ArticleIdList>'
        "<Book><Publisher><PublisherName>University of Washington, Seattle</PublisherName>"
        "</Publisher><BookTitle>GeneReviews</BookTitle><PubDate><Year>1993</Year></PubDate>"
        f"</Book><ArticleTitle>{title}</ArticleTitle><Language>eng</Language>"
        f"{_date('DateRevised', revised)}</BookDocument>"
        '<PubmedBookData><History><PubMedPubDate PubStatus="pubmed"><Year>2010</Year>'
        "<Month>3</Month><Day>20</Day><Hour>6</Hour><Minute>0</Minute></PubMedPubDate>"
        "</History><PublicationStatus>ppublish</PublicationStatus></PubmedBookData>"
        "</PubmedBookArticle>"
    )


def delete_citation(pmids: Iterable[int | str], version: int = 1) -> str:
    """A ``DeleteCitation`` of version ``version`` of each of ``pmids``."""
    inner = "".join(f'<PMID Version="{version}">{p}</PMID>' for p in pmids)
    return f"<DeleteCitation>{inner}</DeleteCitation>"


def article_set(
    records: Iterable[str],
    deletes: Iterable[int | str] = (),
    root: str = "PubmedArticleSet",
    delete_version: int = 1,
) -> str:
    """A whole file: XML declaration, DOCTYPE, the records one a line, then the deletions (of
    version ``delete_version`` of each PMID)."""
    body = "\n".join(records)
    deleted = list(deletes)
    tail = f"\n{delete_citation(deleted, delete_version)}" if deleted else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{DOCTYPE.replace("PubmedArticleSet", root, 1)}'
        f"\n<{root}>\n{body}{tail}\n</{root}>\n"
    )


def write_xml(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (creating its directory), gzipped when the name ends in
    ``.gz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path
