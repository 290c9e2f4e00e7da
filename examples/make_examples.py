"""Build the example documents in examples/docs/ (policy-style texts written for policytag,
not real policies). The generated files are committed; rerun this after editing the texts.
Needs fpdf2 and a CJK TrueType font (Debian: fonts-wqy-microhei) for the PDF."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent / "docs"
FONT = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"

NOTICE = """示范市卫生健康委员会关于推进紧密型医疗联合体建设的实施意见
示卫发〔2024〕12号
各区卫生健康局，委属各医疗机构：
为深化医药卫生体制改革，推动优质医疗资源扩容下沉，结合本市实际，提出如下意见。
一、总体要求
到2026年底，全市建成布局合理、分工明确的紧密型城市医疗集团，基层首诊、双向转诊、急慢分治、上下联动的分级诊疗格局基本形成。
二、重点任务
（一）合理规划网格布局。按照地理位置和服务人口，将全市划分为四个网格，每个网格由一家三级医院牵头，联合区域内社区卫生服务中心组建医疗集团。
（二）加强人才队伍建设。牵头医院每年选派骨干医师到基层医疗卫生机构坐诊带教，落实全科医生规范化培训，基层医务人员职称评聘向一线倾斜。
（三）推进信息互联互通。建设全市统一的医疗集团信息平台，实现电子健康档案和电子病历共享，开展远程会诊、远程影像诊断服务。
（四）完善医保支付政策。对医疗集团实行总额付费，结余留用、合理超支分担，拉开不同级别医疗机构报销比例差距，引导患者基层就医。
三、保障措施
各区要把医疗集团建设纳入政府绩效考核，加强督导评估，对工作成效明显的给予奖励。要加强政策宣传解读，营造全社会支持分级诊疗的良好氛围。
示范市卫生健康委员会
2024年3月15日
"""

SCHEME = """示范县健康社区建设工作方案

为落实健康中国行动，提升城乡居民健康素养，制定本方案。

一、工作目标

到2025年，全县百分之八十的社区达到健康社区标准，居民健康素养水平达到百分之三十。

二、主要措施

（一）开展健康教育。依托社区卫生服务站定期举办健康讲座，
家庭医生团队为签约居民提供个性化健康指导。

（二）加大财政投入。县财政每年安排专项资金用于健康社区建设，
对达标社区给予一次性补助。

示范县人民政府办公室
2023年6月1日
"""

REGULATION = """示范省互联网医院管理办法

第一章 总则

第一条 为规范互联网医院管理，保障医疗质量和患者安全，根据有关法律法规，制定本办法。

第二条 本省行政区域内互联网医院的设置、执业和监督管理，适用本办法。

第二章 执业规则

第三条 互联网医院应当建立健全医疗质量管理制度，医师开展互联网诊疗应当具备三年以上独立临床工作经验。

第四条 省卫生健康委负责全省互联网医院的监督管理，市、县卫生健康行政部门负责本辖区内的日常监管。
"""

PDF_TEXT = """示范市医疗保障局关于开展按病种分值付费试点工作的通知
示医保发〔2025〕3号
各区医疗保障分局，各定点医疗机构：
为提高医保基金使用效率，规范医疗服务行为，经研究，决定在全市开展按病种分值付费（DIP）试点工作。现将有关事项通知如下。
一、试点范围
全市二级及以上定点医疗机构自2025年7月1日起纳入试点，试点期间实行月度预付、年度清算，医保部门与医疗机构共同做好病种分值测算和数据质量核查工作。
二、工作要求
各定点医疗机构要加强病案首页质量管理，医保部门要建立考核评价机制，将考核结果与年度清算挂钩，对违规行为依法依规处理。
示范市医疗保障局
2025年5月20日
"""


def main() -> None:
    HERE.mkdir(parents=True, exist_ok=True)
    (HERE / "医联体实施意见_utf8.txt").write_text(NOTICE, encoding="utf-8")
    # Chinese government files often arrive in GBK/GB18030.
    (HERE / "健康社区工作方案_gbk.txt").write_bytes(SCHEME.encode("gbk"))

    import docx

    document = docx.Document()
    for para in REGULATION.strip().split("\n\n"):
        document.add_paragraph(para)
    document.save(HERE / "互联网医院管理办法.docx")

    from fpdf import FPDF

    pdf = FPDF(format="A5")
    pdf.add_font("wqy", fname=FONT)
    pdf.set_font("wqy", size=10)
    pdf.add_page()
    for para in PDF_TEXT.strip().split("\n"):
        # multi_cell wraps long paragraphs over several lines, as real PDFs do.
        pdf.multi_cell(0, 6, para, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(HERE / "按病种分值付费试点通知.pdf"))


if __name__ == "__main__":
    main()
