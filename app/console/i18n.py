"""The console's two languages: English and Traditional Chinese (the suppliers are Taiwanese
plants). Text is written in English in the templates and looked up here; a string missing a
translation shows in English (a test lists every template string and checks the table)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

ZH_TW: dict[str, str] = {
    "Now": "即時",
    "Incidents": "事件",
    "Data quality": "資料品質",
    "Months": "月報",
    "Admin": "管理",
    "Audit trail": "稽核軌跡",
    "Sign in": "登入",
    "Sign out": "登出",
    "Username": "帳號",
    "Password": "密碼",
    "Wrong username or password.": "帳號或密碼錯誤。",
    "Too many failed sign-ins: try again in {n} s.": "登入失敗次數過多，請於 {n} 秒後再試。",
    "Language": "語言",
    "Site": "廠區",
    "Sites": "廠區",
    "Supplier": "供應商",
    "Meter": "電表",
    "Meters": "電表",
    "Gateway": "閘道器",
    "online": "連線中",
    "offline": "離線",
    "never seen": "未曾連線",
    "last seen": "最後連線",
    "Power now": "目前功率",
    "Today": "今日用量",
    "Usual range": "平常範圍",
    "above usual": "高於平常",
    "below usual": "低於平常",
    "within usual": "平常範圍內",
    "no history": "尚無歷史資料",
    "Open incidents": "未結事件",
    "Quality items": "品質問題",
    "Updated": "更新時間",
    "Page": "頁",
    "next": "下一頁",
    "previous": "上一頁",
    "Latest readings as received": "最新讀值（原始）",
    "Rejected readings": "被拒絕的讀值",
    "reason": "原因",
    "Hourly consumption": "每小時用量",
    "measured": "實測",
    "estimated": "估算",
    "Register events": "電表事件",
    "recorded by": "記錄者",
    "Quality issues": "品質問題",
    "time": "時間",
    "register": "讀數",
    "detail": "說明",
    "none": "無",
    "Acknowledge": "確認收到",
    "Comment": "備註",
    "acknowledged by": "確認者",
    "Silence for maintenance": "維護期間靜音",
    "from": "自",
    "until": "至",
    "whole site": "整個廠區",
    "Silences": "靜音",
    "Cancel": "取消",
    "Resolved history": "已解決紀錄",
    "Send a test alert": "寄送測試警報",
    "Send": "寄送",
    "Register falls without a recorded event": "無事件紀錄的讀數下降",
    "Record the exchange or CT change": "記錄換表或比流器變更",
    "Event type": "事件類型",
    "exchange": "換表",
    "ct_change": "比流器變更",
    "commissioned": "啟用",
    "decommissioned": "停用",
    "Old meter's final register": "舊表最後讀數",
    "New meter's first register": "新表起始讀數",
    "New multiplier": "新倍率",
    "Note": "備註",
    "Save": "儲存",
    "Recorded meter events": "已記錄的電表事件",
    "Withdraw": "撤回",
    "Unknown meters and gateways": "未知的電表與閘道器",
    "Utility bills": "電費與瓦斯帳單",
    "Enter a bill": "輸入帳單",
    "Upload a bills CSV": "上傳帳單 CSV",
    "Upload": "上傳",
    "Carrier": "能源別",
    "Account": "電號",
    "Period start": "計費起日",
    "Period end (exclusive)": "計費迄日（不含）",
    "Billed": "帳單用量",
    "Bill number": "帳單號碼",
    "Month": "月份",
    "Standing version": "現行版本",
    "Restatements": "重編紀錄",
    "Downloads": "下載",
    "Product footprints": "產品碳足跡",
    "Review": "審閱",
    "Confirm this month": "確認本月數據",
    "Dispute": "提出異議",
    "confirmed": "已確認",
    "disputed": "有異議",
    "not reviewed": "尚未審閱",
    "Location-based": "地點基準",
    "Allocated to the buyer": "分配給買方",
    "Electricity": "用電量",
    "Users": "使用者",
    "Add a user": "新增使用者",
    "Role": "角色",
    "admin": "系統管理員",
    "energy_manager": "能源管理者",
    "supplier": "供應商",
    "auditor": "稽核員",
    "Active": "啟用中",
    "Deactivate": "停用",
    "Activate": "啟用",
    "Reason": "原因",
    "When": "時間",
    "Who": "人員",
    "What": "項目",
    "Before": "變更前",
    "After": "變更後",
    "Download CSV": "下載 CSV",
    "Saved.": "已儲存。",
    "Not found.": "找不到。",
    "Refused": "無法儲存",
    "Nothing here.": "目前沒有資料。",
    "why": "原因",
    "version": "版本",
    "written": "產生時間",
    "The next rollup recomputes the hours and restates the month.": "下一次彙總會重新計算這些小時並重編該月。",  # noqa: E501
    "Read-only: auditors see and download, they do not change.": "唯讀：稽核員可檢視與下載，不能修改。",  # noqa: E501
}
"""English → Traditional Chinese (Taiwan)."""

TABLES = {"en": {}, "zh-TW": ZH_TW}


def translator(language: str) -> Callable[..., str]:
    table = TABLES.get(language, {})

    def t(text: str, **values: object) -> str:
        out = table.get(text, text)
        return out.format(**values) if values else out

    return t


def number(value: float | None, digits: int = 1) -> str:
    """A quantity with thousands separators (the same in both languages); ``–`` for none."""
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def when(ts: datetime | int | None, tz: str, language: str) -> str:
    """A time in the site's (or the programme's) timezone, as a reader of ``language`` writes
    it: 2026年12月5日 18:56 or 5 Dec 2026 18:56."""
    if ts is None:
        return "–"
    if isinstance(ts, int):
        from supplymeter.records import ns_to_datetime

        ts = ns_to_datetime(ts)
    local = ts.astimezone(ZoneInfo(tz))
    if language == "zh-TW":
        return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"
    return f"{local.day} {local:%b %Y %H:%M}"
